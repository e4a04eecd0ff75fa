import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import App from "./App";
import { AuthError } from "./api";
import type { Analytics, Range } from "./api";

afterEach(cleanup);

function sample(range: Range, requests = 9412): Analytics {
  const hour = { hour: "2024-11-25T10:00:00.000000Z", requests, spend_usd: 2.64,
    savings_usd: 1.22, spend_nusd: 2640000000, savings_nusd: 1220000000 };
  return {
    object: "analytics", range, start: "", end: "", demo: true,
    totals: { requests, prompt_tokens: 4_000_000, completion_tokens: 1_100_000,
      tokens: 5_100_000, spend_nusd: 2640000000, spend_usd: 2.64,
      savings_nusd: 1220000000, savings_usd: 1.22, cache_hits: 3388,
      cache_hit_rate: 0.36, avg_latency_ms: 412.3, errors: 113, errors_4xx: 13,
      errors_5xx: 100, error_rate: 0.012 },
    hours: requests ? [hour] : [],
    providers: [{ provider: "groq", requests: 4900, spend_usd: 0.8978, spend_nusd: 897800000 }],
    models: [{ model: "llama-3.1-8b", requests: 4900, p50_ms: 250, p95_ms: 610 }],
    keys: { active: 4, top: [{ key_id: "key_1", prefix: "glw_7Qk2", name: "prod-chat",
      demo: true, requests: 4300, spend_usd: 1.21, spend_nusd: 1210000000 }] },
    cache: { window_hours: 48, saved_usd: 1.22, saved_nusd: 1220000000, spend_usd: 2.64,
      spend_nusd: 2640000000, spend_avoided: 0.32, hits: 3388, hours: [hour] },
  };
}

describe("App", () => {
  it("shows the headline tiles in the product page's formats", async () => {
    render(<App load={async (r) => sample(r)} />);
    const req = await screen.findByTestId("tile-requests");
    expect(req.textContent).toContain("9.4K");
    expect(req.textContent).toContain("5.1M tokens");
    expect(screen.getByTestId("tile-spend").textContent).toContain("$2.64");
    expect(screen.getByTestId("tile-spend").textContent).toContain("$1.22 saved");
    expect(screen.getByTestId("tile-cache").textContent).toContain("36.0%");
    expect(screen.getByTestId("tile-cache").textContent).toContain("3.4K hits");
    expect(screen.getByTestId("tile-latency").textContent).toContain("412 ms");
    expect(screen.getByTestId("tile-latency").textContent).toContain("1.2% errors");
    expect(screen.getByTestId("provider-mix").textContent).toContain("4.9K / $0.8978");
    expect(screen.getByTestId("top-keys").textContent).toContain("prod-chat");
    expect(screen.getByTestId("panel-keys").textContent).toContain("4 active");
    expect(screen.getByTestId("cache-avoided").textContent).toBe("32%");
    expect(screen.getByTestId("demo-badge")).toBeTruthy();
  });

  it("asks for the range that the selector picks", async () => {
    const asked: Range[] = [];
    render(<App load={async (r) => { asked.push(r); return sample(r); }} />);
    await screen.findByTestId("tile-requests");
    fireEvent.click(screen.getByTestId("range-7d"));
    await waitFor(() => expect(asked).toContain("7d"));
    expect(screen.getByTestId("main").getAttribute("data-range")).toBe("7d");
  });

  it("says so when the range holds no request", async () => {
    render(<App load={async (r) => sample(r, 0)} />);
    const empty = await screen.findByTestId("empty");
    expect(empty.textContent).toContain("No requests in the last 24h");
    expect(screen.queryByTestId("tile-requests")).toBeNull();
  });

  it("shows an error with a retry when the API fails", async () => {
    let calls = 0;
    render(<App load={async (r) => {
      calls++;
      if (calls === 1) throw new Error("The request log could not be read: down");
      return sample(r);
    }} />);
    const err = await screen.findByTestId("error");
    expect(err.textContent).toContain("could not be read: down");
    fireEvent.click(screen.getByText("Retry"));
    await screen.findByTestId("tile-requests");
  });

  it("asks for the admin key when the API wants one, and keeps it", async () => {
    const keys: string[] = [];
    render(<App load={async (r, key) => {
      keys.push(key ?? "");
      if (key !== "adm-1") throw new AuthError("Missing admin key.", 401);
      return sample(r);
    }} />);
    await screen.findByTestId("login");
    fireEvent.change(screen.getByLabelText("admin key"), { target: { value: "adm-1" } });
    fireEvent.click(screen.getByText("Open"));
    await screen.findByTestId("tile-requests");
    expect(sessionStorage.getItem("relay.admin_key")).toBe("adm-1");
  });
});
