// Small SVG charts, written here to keep the dependencies to React alone.

import { formatHour, formatUsd } from "../format";
import type { Hour } from "../api";

interface Series {
  name: string;
  color: string;
  values: number[];
}

/** Two or more series per hour as bars side by side, with a max label. */
export function HourBars({ hours, series, unit, testId }: {
  hours: Hour[];
  series: Series[];
  unit: (v: number) => string;
  testId: string;
}) {
  const w = 640;
  const h = 180;
  const pad = 24;
  const n = Math.max(hours.length, 1);
  const max = Math.max(1e-12, ...series.flatMap((s) => s.values));
  const slot = (w - pad) / n;
  const bar = Math.max(0.5, (slot * 0.8) / series.length);
  const days = hours.length > 48;
  return (
    <svg className="chart" viewBox={`0 0 ${w} ${h + 20}`} role="img" data-testid={testId}
      aria-label={series.map((s) => s.name).join(" and ") + " per hour"}>
      <line x1={pad} y1={h} x2={w} y2={h} className="axis" />
      <text x={0} y={12} className="tick">{unit(max)}</text>
      {series.map((s, si) =>
        s.values.map((v, i) =>
          v > 0 ? (
            <rect key={`${si}-${i}`} x={pad + i * slot + si * bar} width={bar}
              y={h - (v / max) * (h - 16)} height={(v / max) * (h - 16)} fill={s.color}>
              <title>{`${formatHour(hours[i]?.hour ?? "", days)} ${s.name}: ${unit(v)}`}</title>
            </rect>
          ) : null,
        ),
      )}
      {hours.length > 0 && (
        <>
          <text x={pad} y={h + 16} className="tick">{formatHour(hours[0].hour, days)}</text>
          <text x={w} y={h + 16} className="tick" textAnchor="end">
            {formatHour(hours[hours.length - 1].hour, days)}
          </text>
        </>
      )}
    </svg>
  );
}

/** Spend and savings per hour (USD). */
export function SpendChart({ hours }: { hours: Hour[] }) {
  return (
    <HourBars testId="spend-chart" hours={hours} unit={formatUsd} series={[
      { name: "spend", color: "var(--spend)", values: hours.map((x) => x.spend_usd) },
      { name: "saved", color: "var(--saved)", values: hours.map((x) => x.savings_usd) },
    ]} />
  );
}

/** Horizontal bars, one row per label, with up to two values each. */
export function RowBars({ rows, testId }: {
  rows: { label: string; values: { v: number; color: string; text: string }[] }[];
  testId: string;
}) {
  const max = Math.max(1e-12, ...rows.flatMap((r) => r.values.map((x) => x.v)));
  return (
    <div className="rowbars" data-testid={testId}>
      {rows.map((r) => (
        <div className="rowbar" key={r.label}>
          <span className="rowbar-label">{r.label}</span>
          <span className="rowbar-bars">
            {r.values.map((x, i) => (
              <span key={i} className="rowbar-bar"
                style={{ width: `${Math.max(1, (x.v / max) * 100)}%`, background: x.color }}
                title={x.text} />
            ))}
          </span>
          <span className="rowbar-text">{r.values.map((x) => x.text).join(" / ")}</span>
        </div>
      ))}
    </div>
  );
}
