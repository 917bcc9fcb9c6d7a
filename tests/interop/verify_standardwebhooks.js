// Verifies captured revdesk deliveries with the Standard Webhooks reference library for
// JavaScript (npm package `standardwebhooks`), unchanged.
//
// Usage: node verify_standardwebhooks.js NPM_PREFIX CAPTURED_JSON
// CAPTURED_JSON contains an array of {"secret", "headers": {name: value}, "body_base64"}.
// Prints one JSON array with, per delivery, whether the library accepted it, the payload it
// parsed, and whether it rejected the same delivery with one body byte changed and with another
// secret. Exits 0 when the file was read, whatever the results; the caller judges them.
"use strict";

const fs = require("fs");
const path = require("path");

const [prefix, capturedFile] = process.argv.slice(2);
const { Webhook } = require(path.join(prefix, "node_modules", "standardwebhooks"));

// Returns the error message of `f`, or null when it does not throw.
function failure(f) {
    try {
        f();
        return null;
    } catch (e) {
        return String(e && e.message ? e.message : e);
    }
}

const captured = JSON.parse(fs.readFileSync(capturedFile, "utf8"));
const otherSecret = "whsec_" + Buffer.alloc(32, 7).toString("base64");
const results = captured.map((delivery) => {
    const body = Buffer.from(delivery.body_base64, "base64");
    let payload = null;
    const error = failure(() => {
        payload = new Webhook(delivery.secret).verify(body, delivery.headers);
    });

    const tampered = Buffer.from(body);
    tampered[tampered.length - 1] ^= 0x01;
    const tamperedError = failure(() =>
        new Webhook(delivery.secret).verify(tampered, delivery.headers),
    );
    const otherSecretError = failure(() => new Webhook(otherSecret).verify(body, delivery.headers));

    return {
        webhook_id: delivery.headers["webhook-id"],
        verified: error === null,
        error,
        payload,
        tampered_rejected: tamperedError !== null,
        other_secret_rejected: otherSecretError !== null,
    };
});
process.stdout.write(JSON.stringify(results));
