// Remembered orders: a returning mobile customer lands on the same order.

const STORE_KEY = "bitloot.orders";
export const LAST_KEY = "bitloot.lastOrder";

export function remembered() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

export function remember(orderId, token) {
  try {
    const orders = remembered();
    orders[orderId] = { token, at: Date.now() };
    const newest = Object.entries(orders)
      .sort((a, b) => b[1].at - a[1].at)
      .slice(0, 10);
    localStorage.setItem(STORE_KEY, JSON.stringify(Object.fromEntries(newest)));
    localStorage.setItem(LAST_KEY, orderId);
    sessionStorage.setItem(LAST_KEY, orderId);
  } catch {
    // storage can be off (private browsing); the token stays in the URL
  }
}

export function lastOrder() {
  try {
    return sessionStorage.getItem(LAST_KEY) || localStorage.getItem(LAST_KEY);
  } catch {
    return null;
  }
}

export const orderUrl = (orderId, token) =>
  `/order/${encodeURIComponent(orderId)}?token=${encodeURIComponent(token)}`;
