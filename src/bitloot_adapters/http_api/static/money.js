// Exact decimal arithmetic on strings: amounts never go through floats.

function parseDecimal(text) {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(String(text).trim());
  if (!match) throw new Error(`not a decimal amount: ${text}`);
  const fraction = match[2] || "";
  return { units: BigInt(match[1] + fraction), scale: fraction.length };
}

function formatDecimal(units, scale) {
  const digits = units.toString().padStart(scale + 1, "0");
  return scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
}

function rescale({ units, scale }, to) {
  return units * 10n ** BigInt(to - scale);
}

// sum of price × quantity over lines, exactly, at the largest scale seen
export function sumLines(lines) {
  const parsed = lines.map(([price, quantity]) => [parseDecimal(price), BigInt(quantity)]);
  const scale = Math.max(2, ...parsed.map(([p]) => p.scale));
  const units = parsed.reduce((sum, [p, q]) => sum + rescale(p, scale) * q, 0n);
  return formatDecimal(units, scale);
}

// percent% of amount, rounded down at the amount's own precision
export function percentOf(amount, percent) {
  const { units, scale } = parseDecimal(amount);
  return formatDecimal((units * BigInt(percent)) / 100n, scale);
}

export const money = (amount, currency) => `${amount} ${String(currency || "").toUpperCase()}`;
