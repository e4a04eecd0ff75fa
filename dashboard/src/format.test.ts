import { describe, expect, it } from "vitest";
import { formatCount, formatMs, formatPercent, formatUsd } from "./format";

describe("formatUsd", () => {
  it("shows dollars and cents from a dollar up", () => {
    expect(formatUsd(2.64)).toBe("$2.64");
    expect(formatUsd(1.3712)).toBe("$1.37");
    expect(formatUsd(18.42)).toBe("$18.42");
    expect(formatUsd(1234.5)).toBe("$1,234.50");
  });
  it("shows four significant digits under a dollar", () => {
    expect(formatUsd(0.89781)).toBe("$0.8978");
    expect(formatUsd(0.36969)).toBe("$0.3697");
    expect(formatUsd(0.37)).toBe("$0.37");
    expect(formatUsd(0.000012346)).toBe("$0.00001235");
  });
  it("shows nothing spent as $0", () => {
    expect(formatUsd(0)).toBe("$0");
  });
});

describe("formatCount", () => {
  it("shows small counts whole", () => {
    expect(formatCount(848)).toBe("848");
    expect(formatCount(0)).toBe("0");
  });
  it("shows thousands and millions with one decimal", () => {
    expect(formatCount(9412)).toBe("9.4K");
    expect(formatCount(4300)).toBe("4.3K");
    expect(formatCount(5_100_000)).toBe("5.1M");
    expect(formatCount(123_456)).toBe("123K");
    expect(formatCount(999_960)).toBe("1.0M");
  });
});

describe("formatPercent and formatMs", () => {
  it("formats rates and latencies as the product page", () => {
    expect(formatPercent(0.36)).toBe("36.0%");
    expect(formatPercent(0.012)).toBe("1.2%");
    expect(formatPercent(0.32, 0)).toBe("32%");
    expect(formatMs(412.4)).toBe("412 ms");
    expect(formatMs(2.46)).toBe("2.5 ms");
    expect(formatMs(1250)).toBe("1.25 s");
  });
});
