// The analytics page: a range selector, the tiles and the panels, with
// clear loading, empty, error and login states. Data comes from one call,
// GET /admin/analytics?range=... (api.ts), refreshed every 10 seconds.

import { useCallback, useEffect, useState } from "react";
import { AuthError, fetchAnalytics, RANGES, saveKey, savedKey } from "./api";
import type { Analytics, Range } from "./api";
import {
  CachePanel, LatencyByModel, ProviderMix, SpendPanel, Tiles, TopKeys,
} from "./components/Panels";

const REFRESH_MS = 10000;

type State =
  | { kind: "loading" }
  | { kind: "ready"; data: Analytics }
  | { kind: "error"; message: string }
  | { kind: "login"; message: string };

export function Login({ message, onKey }: { message: string; onKey: (k: string) => void }) {
  const [key, setKey] = useState("");
  return (
    <form className="login" data-testid="login"
      onSubmit={(e) => { e.preventDefault(); onKey(key.trim()); }}>
      <h2>Admin key</h2>
      <p>{message}</p>
      <p className="note">
        This dashboard reads /admin/analytics, which wants the gateway's
        admin_key. It is kept in this tab only (sessionStorage).
      </p>
      <input type="password" aria-label="admin key" value={key} autoFocus
        onChange={(e) => setKey(e.target.value)} placeholder="admin_key of relay.yaml" />
      <button type="submit">Open</button>
    </form>
  );
}

export function Empty({ range }: { range: Range }) {
  return (
    <section className="empty" data-testid="empty">
      <h2>No requests in the last {range}</h2>
      <p>
        The request log holds no request in this range yet. Send one through
        the gateway (make up prints a curl line), or start the demo traffic:
        <code> python3 scripts/demo_traffic.py</code>
      </p>
    </section>
  );
}

export function Dashboard({ data }: { data: Analytics }) {
  return (
    <>
      <Tiles data={data} />
      <div className="grid">
        <SpendPanel data={data} />
        <ProviderMix data={data} />
        <LatencyByModel data={data} />
        <TopKeys data={data} />
      </div>
      <CachePanel data={data} />
    </>
  );
}

export default function App({ load = fetchAnalytics }: { load?: typeof fetchAnalytics }) {
  const [range, setRange] = useState<Range>(() => {
    const r = new URLSearchParams(window.location.search).get("range");
    return (RANGES as string[]).includes(r ?? "") ? (r as Range) : "24h";
  });
  const [state, setState] = useState<State>({ kind: "loading" });

  const refresh = useCallback(async (quiet: boolean) => {
    if (!quiet) setState({ kind: "loading" });
    try {
      const data = await load(range, savedKey());
      setState({ kind: "ready", data });
    } catch (e) {
      if (e instanceof AuthError) {
        setState({ kind: "login", message: e.message });
      } else {
        setState({ kind: "error", message: e instanceof Error ? e.message : String(e) });
      }
    }
  }, [load, range]);

  useEffect(() => {
    void refresh(false);
    const t = setInterval(() => void refresh(true), REFRESH_MS);
    return () => clearInterval(t);
  }, [refresh]);

  const data = state.kind === "ready" ? state.data : null;
  return (
    <div className="page">
      <header className="top">
        <div className="crumb">/ analytics</div>
        <nav className="ranges" aria-label="range">
          {RANGES.map((r) => (
            <button key={r} type="button" className={r === range ? "on" : ""}
              aria-pressed={r === range} data-testid={`range-${r}`}
              onClick={() => setRange(r)}>{r}</button>
          ))}
        </nav>
        {data?.demo && <span className="demo" data-testid="demo-badge">demo</span>}
      </header>
      <main data-testid="main" data-range={range} data-state={state.kind}>
        {state.kind === "loading" && <div className="loading">Loading…</div>}
        {state.kind === "error" && (
          <section className="error" data-testid="error" role="alert">
            <h2>Could not load the analytics</h2>
            <p>{state.message}</p>
            <button type="button" onClick={() => void refresh(false)}>Retry</button>
          </section>
        )}
        {state.kind === "login" && (
          <Login message={state.message} onKey={(k) => { saveKey(k); void refresh(false); }} />
        )}
        {data && data.totals.requests === 0 && <Empty range={range} />}
        {data && data.totals.requests > 0 && <Dashboard data={data} />}
      </main>
    </div>
  );
}
