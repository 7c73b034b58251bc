// Runs the official NOWPayments JavaScript client against a sandbox and prints what each
// call answered, as JSON, for tests/sdk/test_nowpayments_sdk.py.
//
// The client has its base URL (https://api.nowpayments.io/v1/) built in: its HTTPS
// requests are sent to the sandbox instead, over plain HTTP, with the path kept.
//   node nowpayments_sdk.js http://127.0.0.1:PORT/nowpayments API_KEY CALLBACK_URL
"use strict";

const http = require("http");
const https = require("https");

const [sandbox, apiKey, callbackUrl] = process.argv.slice(2);
const target = new URL(sandbox);
const prefix = target.pathname.replace(/\/$/, "");

https.request = (options, callback) =>
  http.request(
    {
      ...options,
      protocol: "http:",
      hostname: target.hostname,
      host: target.hostname,
      port: target.port,
      path: prefix + options.path,
      agent: undefined,
    },
    callback,
  );

const NOWPaymentsApi = require("@nowpaymentsio/nowpayments-api-js");
const Client = NOWPaymentsApi.default || NOWPaymentsApi;

async function main() {
  const api = new Client({ apiKey });
  const answers = {};
  answers.status = await api.status();
  answers.currencies = await api.getCurrencies();
  answers.minimum = await api.getMinimumPaymentAmount({ currency_from: "btc", currency_to: "btc" });
  answers.estimate = await api.getEstimatePrice({
    amount: 19.99,
    currency_from: "usd",
    currency_to: "btc",
  });
  answers.payment = await api.createPayment({
    price_amount: 19.99,
    price_currency: "usd",
    pay_currency: "btc",
    ipn_callback_url: callbackUrl,
    order_id: "sdk-order-1",
    order_description: "Stardew Valley",
  });
  answers.paymentStatus = await api.getPaymentStatus({ payment_id: answers.payment.payment_id });
  answers.list = await api.getListPayments({ limit: 10, page: 0, orderBy: "desc" });
  answers.invoice = await api.createInvoice({
    price_amount: 19.99,
    price_currency: "usd",
    order_id: "sdk-order-2",
    ipn_callback_url: callbackUrl,
    success_url: "https://shop.example/thanks",
    cancel_url: "https://shop.example/cart",
  });
  answers.wrongKey = await new Client({ apiKey: "" }).getCurrencies();
  process.stdout.write(JSON.stringify(answers));
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
