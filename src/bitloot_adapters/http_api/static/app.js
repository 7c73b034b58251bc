// The bitloot customer page: the shop (products, cart, pay) at "/", one order (status,
// payment, keys) at "/order/ID". Plain browser JavaScript modules, no build step:
//   shop.js, order.js, payment.js  the views
//   a11y.js                        announcements, focus, titles
//   api.js, dom.js, money.js, storage.js, messages.js  the small helpers they share

import { orderPage } from "./order.js";
import { shopPage } from "./shop.js";

const route = /^\/order\/([^/]+)\/?$/.exec(window.location.pathname);
if (route) orderPage(decodeURIComponent(route[1]));
else shopPage();
