// The panels of the analytics page, each from one part of the API's answer
// (docs/dashboard.md says where each number comes from).

import type { Analytics } from "../api";
import { formatCount, formatMs, formatPercent, formatUsd } from "../format";
import { HourBars, RowBars, SpendChart } from "./charts";

export function Tile({ id, label, value, sub }: {
  id: string;
  label: string;
  value: string;
  sub: string;
}) {
  return (
    <div className="tile" data-testid={`tile-${id}`}>
      <div className="tile-label">{label}</div>
      <div className="tile-value">{value}</div>
      <div className="tile-sub">{sub}</div>
    </div>
  );
}

export function Tiles({ data }: { data: Analytics }) {
  const t = data.totals;
  return (
    <section className="tiles">
      <Tile id="requests" label="Requests" value={formatCount(t.requests)}
        sub={`${formatCount(t.tokens)} tokens`} />
      <Tile id="spend" label="Spend" value={formatUsd(t.spend_usd)}
        sub={`${formatUsd(t.savings_usd)} saved`} />
      <Tile id="cache" label="Cache hit rate" value={formatPercent(t.cache_hit_rate)}
        sub={`${formatCount(t.cache_hits)} hits`} />
      <Tile id="latency" label="Avg latency" value={formatMs(t.avg_latency_ms)}
        sub={`${formatPercent(t.error_rate)} errors`} />
    </section>
  );
}

function Panel({ title, note, children, testId }: {
  title: string;
  note?: string;
  children: React.ReactNode;
  testId: string;
}) {
  return (
    <section className="panel" data-testid={testId}>
      <header>
        <h2>{title}</h2>
        {note && <span className="note">{note}</span>}
      </header>
      {children}
    </section>
  );
}

export function SpendPanel({ data }: { data: Analytics }) {
  return (
    <Panel title="Spend and savings" note="per hour" testId="panel-spend">
      <SpendChart hours={data.hours} />
      <div className="legend">
        <span className="sw spend" /> spend <span className="sw saved" /> saved
      </div>
    </Panel>
  );
}

export function ProviderMix({ data }: { data: Analytics }) {
  return (
    <Panel title="Provider mix" note="by requests" testId="panel-providers">
      <RowBars testId="provider-mix" rows={data.providers.map((p) => ({
        label: p.provider || "(none)",
        values: [{ v: p.requests, color: "var(--spend)",
          text: `${formatCount(p.requests)} / ${formatUsd(p.spend_usd)}` }],
      }))} />
    </Panel>
  );
}

export function LatencyByModel({ data }: { data: Analytics }) {
  return (
    <Panel title="Latency by model" note="p50 / p95, ms" testId="panel-latency">
      <RowBars testId="latency-by-model" rows={data.models.map((m) => ({
        label: m.model || "(unrouted)",
        values: [
          { v: m.p50_ms, color: "var(--p50)", text: `${Math.round(m.p50_ms)}` },
          { v: m.p95_ms, color: "var(--p95)", text: `${Math.round(m.p95_ms)}` },
        ],
      }))} />
    </Panel>
  );
}

export function TopKeys({ data }: { data: Analytics }) {
  return (
    <Panel title="Top keys by spend" note={`${data.keys.active} active`} testId="panel-keys">
      <table className="keys" data-testid="top-keys">
        <thead>
          <tr><th>Key</th><th>Name</th><th>Requests</th><th>Spend</th></tr>
        </thead>
        <tbody>
          {data.keys.top.map((k) => (
            <tr key={k.key_id + k.prefix}>
              <td className="mono">{k.prefix || "(no key)"}</td>
              <td>{k.name || (k.key_id ? k.key_id : "static key")}</td>
              <td>{formatCount(k.requests)}</td>
              <td>{formatUsd(k.spend_usd)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Panel>
  );
}

export function CachePanel({ data }: { data: Analytics }) {
  const c = data.cache;
  return (
    <section className="panel cache" data-testid="panel-cache">
      <h2>The cache pays for itself.</h2>
      <p>
        Repeated and near-repeat prompts never reach a provider. Relay records
        what each cached hit would have cost, so the savings are a line item,
        not a guess.
      </p>
      <div className="cache-figures">
        <div>
          <div className="tile-label">saved, {c.window_hours}h</div>
          <div className="tile-value" data-testid="cache-saved">{formatUsd(c.saved_usd)}</div>
        </div>
        <div>
          <div className="tile-label">of total spend</div>
          <div className="tile-value" data-testid="cache-avoided">
            {formatPercent(c.spend_avoided, 0)}
          </div>
          <div className="tile-sub">spend avoided</div>
        </div>
      </div>
      <HourBars testId="cache-chart" hours={c.hours}
        unit={(v) => `${(v * 100).toFixed(v * 100 >= 10 ? 0 : 2)}¢`}
        series={[{ name: "saved", color: "var(--saved)",
          values: c.hours.map((x) => x.savings_usd) }]} />
      <div className="note">cents / hour</div>
    </section>
  );
}
