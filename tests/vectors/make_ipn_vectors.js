#!/usr/bin/env node
// Generates the IPN signature vectors with the real JSON.stringify and node:crypto.
//
//   node tests/vectors/make_ipn_vectors.js [output-directory]
//
// writes ipn_vectors.json (signed IPN bodies) and canonical_vectors.json (seeded random
// numbers, strings and keys with the text Node prints for them) beside this file, or into
// output-directory. No npm packages; the output is deterministic, so a rerun must leave
// both files unchanged (the tests check that the committed files are current).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

// The key sorter from the NOWPayments IPN documentation, as the provider signs with it:
// arrays are objects to it (their indexes become keys) and a "__proto__" key vanishes.
function sortObject(obj) {
  return Object.keys(obj)
    .sort()
    .reduce((result, key) => {
      result[key] = obj[key] && typeof obj[key] === "object" ? sortObject(obj[key]) : obj[key];
      return result;
    }, {});
}

function canonical(rawBody) {
  return JSON.stringify(sortObject(JSON.parse(rawBody)));
}

function sign(secret, text) {
  return crypto.createHmac("sha512", secret).update(text, "utf8").digest("hex");
}

// Keys in another order than the canonical one: a proxy that re-serialises the body.
function reversedKeys(value) {
  if (Array.isArray(value)) return value.map(reversedKeys);
  if (value === null || typeof value !== "object") return value;
  const out = {};
  for (const key of Object.keys(value).reverse()) out[key] = reversedKeys(value[key]);
  return out;
}

const SECRET = "Yb3kR9tV2mQ8xL5nW7cJ4hF6dS1aZ0pE";
const OTHER_SECRET = "sécret-ключ-秘密-😀";

// The real `finished` IPN from the NOWPayments reference, keys as sent.
const FINISHED_IPN =
  '{"actually_paid":0.00656612,"actually_paid_at_fiat":0,"fee":{"currency":"btc",' +
  '"depositFee":0.000002,"serviceFee":0.000003,"withdrawalFee":0},"invoice_id":null,' +
  '"order_description":null,"order_id":"ord_7Q2mX9kLp4","outcome_amount":0.00022187,' +
  '"outcome_currency":"btc","parent_payment_id":null,' +
  '"pay_address":"0x05Db8cE3a41F2b7D9e0C6a5B4f3E2d1C0b9A8f7E","pay_amount":0.00656612,' +
  '"pay_currency":"eth","payin_extra_id":null,"payment_extra_ids":null,' +
  '"payment_id":5800567260,"payment_status":"finished","price_amount":20,' +
  '"price_currency":"usd","purchase_id":"5172103429","updated_at":1765249461097}';

const finished = JSON.parse(FINISHED_IPN);

// Every number form the reference lists as a Python/Node disagreement, as raw JSON text.
const NUMBER_FORMS =
  '{"payment_status":"finished","payment_id":5800567260,' +
  '"a_tiny":0.000002,"b_exp":1e-7,"c_trailing_zero":100.0,"d_1e21":1e21,"e_1e20":1e20,' +
  '"f_neg_zero":-0.0,"g_upper_exp":1E-7,"h_padded":0.10,"i_plus_exp":2.5E+3,' +
  '"j_1e16":1e16,"k_edge_1e-6":0.000001,"l_edge_1e-7":0.0000001}';

const BIG_NUMBERS =
  '{"huge_int":12345678901234567890123,"two_53_plus_1":9007199254740993,' +
  '"two_60":1152921504606846976,"just_below_1e21":999999999999999999999,' +
  '"near_1e21":123456789012345678901,"denormal":5e-324,"max":1.7976931348623157e308,' +
  '"scaled":123e-20,"overflow":1e400,"underflow":-1e-400,"neg":-42.50,"third":0.333333333333333333333}';

const CONTROL_CHARS =
  '{"s":"tab\\there\\nnew\\rcr\\bbs\\fff\\u0001\\u001f\\u007f\\u2028\\u2029",' +
  '"q":"\\"quoted\\" back\\\\slash \\/slash \\u0041"}';

// Sixteen containers deep, the deepest body the library accepts: the innermost object and
// its array are two levels, each wrapping object-and-array adds two more.
function sixteenLevels() {
  let value = { z: 0, y: 1, w: [3, 1] };
  for (const key of ["g", "f", "e", "d", "c", "b", "a"]) value = { [key]: [value] };
  return JSON.stringify(value);
}

const vectors = [
  ["finished_ipn_as_sent", SECRET, FINISHED_IPN],
  ["finished_ipn_other_secret", OTHER_SECRET, FINISHED_IPN],
  ["finished_ipn_reordered_pretty", SECRET, JSON.stringify(reversedKeys(finished), null, 2)],
  ["finished_ipn_reordered_compact", SECRET, JSON.stringify(reversedKeys(finished))],
  ["finished_ipn_surrounding_whitespace", SECRET, "\r\n  " + FINISHED_IPN + "\n"],
  [
    "fee_keys_unsorted",
    SECRET,
    JSON.stringify({
      ...finished,
      fee: { withdrawalFee: 0, serviceFee: 0.000003, depositFee: 0.000002, currency: "btc" },
    }),
  ],
  [
    "waiting_string_ids_iso_time",
    SECRET,
    canonical(
      JSON.stringify({
        payment_id: "5800567260",
        payment_status: "waiting",
        pay_address: "bc1qexampleaddress0000000000000000000000",
        price_amount: 19.99,
        price_currency: "EUR",
        pay_amount: 0.00021,
        pay_currency: "BTC",
        actually_paid: null,
        order_id: "ord_7Q2mX9kLp4",
        purchase_id: 5172103429,
        updated_at: "2025-12-09T03:04:21.097Z",
      }),
    ),
  ],
  [
    "partially_paid_repeat_deposit",
    OTHER_SECRET,
    JSON.stringify({
      payment_id: 5800567999,
      parent_payment_id: 5800567260,
      payment_status: "partially_paid",
      actually_paid: 0.0001,
      payment_extra_ids: [5800568000, 5800568001],
      price_amount: 20,
      price_currency: "usd",
      order_id: "ord_7Q2mX9kLp4",
    }),
  ],
  ["number_forms_raw", SECRET, NUMBER_FORMS],
  ["number_forms_canonical", SECRET, canonical(NUMBER_FORMS)],
  ["big_numbers_raw", SECRET, BIG_NUMBERS],
  [
    "integer_like_keys",
    SECRET,
    '{"b":1,"10":2,"2":3,"a":4,"01":5,"4294967295":6,"4294967294":7,"-1":8,' +
      '"1.5":9,"":10," 1":11,"0":12,"1e3":13,"B":14}',
  ],
  [
    "non_ascii_raw",
    SECRET,
    '{"name":"Café é","emoji":"😀 ok","cjk":"游戏钥匙","ключ":"значение",' +
      '"😀":"astral key","\ue000":"private use","ｚ":"fullwidth z","zz":"ascii"}',
  ],
  [
    "non_ascii_escaped",
    SECRET,
    '{"name":"Caf\\u00e9 \\u00E9","emoji":"\\ud83d\\ude00 ok","cjk":"\\u6e38\\u620f",' +
      '"\\ud83d\\ude00":"astral key","\\uff5a":"fullwidth z"}',
  ],
  ["control_chars", SECRET, CONTROL_CHARS],
  [
    "lone_surrogates",
    SECRET,
    '{"s":"\\ud800","t":"\\udfff x","u":"\\ud83d\\ude00","\\udc00":"lone key",' +
      '"\\ud83d\\ude00":"pair key","\\uffff":"last bmp"}',
  ],
  [
    "arrays_become_objects",
    SECRET,
    '{"payment_extra_ids": [5800568000, 5800568001], "nested": [[1, 2], [{"b": 1, "a": 2}]],' +
      ' "empty": [], "obj": {}, "mixed": [null, true, false, "x", 1.50]}',
  ],
  ["proto_key_object", SECRET, '{"payment_id":1,"__proto__":{"x":1},"payment_status":"waiting"}'],
  ["proto_key_scalar", SECRET, '{"__proto__":5,"payment_id":1,"payment_status":"waiting"}'],
  ["empty_object", SECRET, "{}"],
  ["sixteen_levels", SECRET, sixteenLevels()],
];

const ipnVectors = vectors.map(([name, secret, body]) => {
  const text = canonical(body);
  return {
    name,
    body,
    secret,
    signature: sign(secret, text),
    canonical: text,
    body_is_canonical: body === text,
  };
});

// mulberry32: a small seeded PRNG, so the random cases are the same on every run.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = rng(20251209);
const pick = (items) => items[Math.floor(random() * items.length)];
const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
const digits = (n) => Array.from({ length: n }, () => String(int(0, 9))).join("");

function randomBitsDouble() {
  const view = new DataView(new ArrayBuffer(8));
  view.setUint32(0, Math.floor(random() * 4294967296));
  view.setUint32(4, Math.floor(random() * 4294967296));
  const x = view.getFloat64(0);
  return Number.isFinite(x) ? x : randomBitsDouble();
}

// A JSON number text, in one of several spellings Node would parse to some double.
function randomNumberText() {
  const sign = random() < 0.3 ? "-" : "";
  switch (int(0, 6)) {
    case 0:
      return String(randomBitsDouble());
    case 1:
      return randomBitsDouble().toExponential(int(0, 20)).replace("e", pick(["e", "E"]));
    case 2: {
      const mantissa = String(int(1, 9)) + digits(int(0, 24));
      const fraction = random() < 0.5 ? "." + digits(int(1, 20)) : "";
      return `${sign}${mantissa}${fraction}e${pick(["", "+", "-"])}${int(0, 330)}`;
    }
    case 3:
      // Around the plain/exponent switches at 1e-6 and 1e21.
      return `${sign}${int(1, 9)}.${digits(int(1, 16))}e${pick([-8, -7, -6, -5, 19, 20, 21, 22])}`;
    case 4:
      // Integers around 2^53 and beyond, written out in full.
      return sign + String(int(1, 9)) + digits(int(14, 24));
    case 5:
      return `${sign}0.${"0".repeat(int(0, 8))}${int(1, 9)}${digits(int(0, 17))}`;
    default:
      return `${sign}${int(0, 99999)}${random() < 0.5 ? "." + digits(int(1, 4)) + "0" : ""}`;
  }
}

const CHAR_POOLS = [
  () => String.fromCharCode(int(0x20, 0x7e)),
  () => String.fromCharCode(int(0x00, 0x1f)),
  () => pick(['"', "\\", "/", "\u007f", "\u2028", "\u2029"]),
  () => String.fromCharCode(int(0xa0, 0x2ff)),
  () => String.fromCharCode(int(0x4e00, 0x9fff)),
  () => String.fromCharCode(int(0xe000, 0xffff)),
  () => String.fromCharCode(int(0xd800, 0xdfff)),
  () => String.fromCodePoint(int(0x10000, 0x10ffff)),
  () => pick(["0", "1", "2", "10", "01", "4294967294", "4294967295", "-1"]),
];

function randomString() {
  return Array.from({ length: int(0, 8) }, () => pick(CHAR_POOLS)()).join("");
}

function randomObjectText() {
  const obj = {};
  for (let i = int(1, 8); i > 0; i -= 1) obj[randomString()] = randomString();
  return JSON.stringify(obj);
}

const canonicalVectors = {
  numbers: Array.from({ length: 400 }, () => {
    const text = randomNumberText();
    return { text, expected: JSON.stringify(JSON.parse(text)) };
  }),
  objects: Array.from({ length: 150 }, () => {
    const text = randomObjectText();
    return { text, expected: canonical(text) };
  }),
};

const outputDirectory = process.argv[2] || __dirname;

function write(name, value) {
  const text = JSON.stringify(value, null, 1) + "\n";
  fs.writeFileSync(path.join(outputDirectory, name), text, "utf8");
}

write("ipn_vectors.json", { vectors: ipnVectors });
write("canonical_vectors.json", canonicalVectors);
console.log(
  `wrote ${ipnVectors.length} IPN vectors, ${canonicalVectors.numbers.length} numbers, ` +
    `${canonicalVectors.objects.length} objects`,
);
