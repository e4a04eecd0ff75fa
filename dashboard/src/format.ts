// Number formats as the product page shows them: money "$2.64" (and
// "$0.8978" under a dollar), counts "9.4K" / "5.1M", rates "36.0%".

/** USD: whole cents from $1 up, four significant digits below, "$0" for 0. */
export function formatUsd(usd: number): string {
  if (!Number.isFinite(usd) || usd === 0) return "$0";
  const sign = usd < 0 ? "-" : "";
  const v = Math.abs(usd);
  if (v >= 1) {
    return sign + "$" + v.toLocaleString("en-US", {
      minimumFractionDigits: 2,
      maximumFractionDigits: 2,
    });
  }
  // Four significant digits, trailing zeros dropped: 0.8978, 0.37, 0.0001234.
  const text = Number(v.toPrecision(4)).toString();
  return sign + "$" + (text.includes("e") ? v.toFixed(10).replace(/0+$/, "") : text);
}

/** Counts: 848, 4.3K, 12.5K, 123K, 5.1M, 1.2B. */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return "0";
  const units = ["", "K", "M", "B"];
  let x = n;
  let u = 0;
  while (Math.abs(x) >= 1000 && u < units.length - 1) {
    x /= 1000;
    u++;
  }
  if (u === 0) return Math.round(n).toString();
  let digits = Math.abs(x) >= 100 ? 0 : 1;
  // 999.96K rounds to "1000K": carry it into the next unit.
  if (Number(x.toFixed(digits)) >= 1000 && u < units.length - 1) {
    x /= 1000;
    u++;
    digits = 1;
  }
  return x.toFixed(digits) + units[u];
}

/** A ratio (0..1) as a percentage with one decimal: "36.0%". */
export function formatPercent(ratio: number, digits = 1): string {
  if (!Number.isFinite(ratio)) return "0%";
  return (ratio * 100).toFixed(digits) + "%";
}

/** Milliseconds: "412 ms", "1.25 s" from 10 s up shown as "12.3 s". */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "0 ms";
  if (ms >= 10000) return (ms / 1000).toFixed(1) + " s";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms < 10) return ms.toFixed(1) + " ms";
  return Math.round(ms) + " ms";
}

/** "14:00" for an ISO hour, or "Nov 25" for a range over days. */
export function formatHour(iso: string, days: boolean): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (days) {
    return d.toLocaleDateString("en-US", { month: "short", day: "numeric" });
  }
  return d.toLocaleTimeString("en-US", { hour: "2-digit", minute: "2-digit", hour12: false });
}
