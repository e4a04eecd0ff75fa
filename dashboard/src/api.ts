// The one call the dashboard makes: GET /admin/analytics?range=...
// (docs/api.md). On the local stack the dashboard's listener answers it
// without a key; elsewhere the admin key is asked for once and kept in
// sessionStorage (docs/dashboard.md).

export type Range = "1h" | "24h" | "7d" | "30d";
export const RANGES: Range[] = ["1h", "24h", "7d", "30d"];

export interface Totals {
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  tokens: number;
  spend_nusd: number;
  spend_usd: number;
  savings_nusd: number;
  savings_usd: number;
  cache_hits: number;
  cache_hit_rate: number;
  avg_latency_ms: number;
  errors: number;
  errors_4xx: number;
  errors_5xx: number;
  error_rate: number;
}

export interface Hour {
  hour: string;
  requests: number;
  spend_usd: number;
  savings_usd: number;
  spend_nusd: number;
  savings_nusd: number;
}

export interface Analytics {
  object: "analytics";
  range: Range;
  start: string;
  end: string;
  demo: boolean;
  totals: Totals;
  hours: Hour[];
  providers: { provider: string; requests: number; spend_usd: number; spend_nusd: number }[];
  models: { model: string; requests: number; p50_ms: number; p95_ms: number }[];
  keys: {
    active: number;
    top: {
      key_id: string;
      prefix: string;
      name: string;
      demo: boolean;
      requests: number;
      spend_usd: number;
      spend_nusd: number;
    }[];
  };
  cache: {
    window_hours: number;
    saved_usd: number;
    saved_nusd: number;
    spend_usd: number;
    spend_nusd: number;
    spend_avoided: number;
    hits: number;
    hours: Hour[];
  };
}

const KEY_STORE = "relay.admin_key";

/** Thrown when the API wants the admin key (401) or has none (403). */
export class AuthError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export function savedKey(): string {
  try {
    return sessionStorage.getItem(KEY_STORE) ?? "";
  } catch {
    return "";
  }
}

export function saveKey(key: string): void {
  try {
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
  } catch {
    /* private mode: the key lives for this page only */
  }
}

export async function fetchAnalytics(range: Range, key = savedKey()): Promise<Analytics> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(`/admin/analytics?range=${range}`, { headers });
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    const message =
      (body as { error?: { message?: string } } | null)?.error?.message ??
      `HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) throw new AuthError(message, res.status);
    throw new Error(message);
  }
  return body as Analytics;
}
