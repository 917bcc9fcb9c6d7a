// The fan-out a user would write in Node.js instead of using revdesk: one keep-alive Agent from
// the core http/https modules, a fixed number of concurrent workers, and every delivery signed
// with Standard Webhooks headers (HMAC-SHA256 over `id.timestamp.body`). Prints one JSON line per
// batch in the format of revdesk-bench-fanout, so run.py treats both alike.
//
//   node node_fanout.mjs --scheme http|https --http-port P --https-port P --ca-file PEM
//       --payload FILE --subscriptions N --endpoints E --concurrency C
//       --warmup-deliveries W --min-deliveries M --target-seconds T --runs R
//
// Receivers are named rJ.bench.test; the Agent's lookup maps every such name to 127.0.0.1 and
// rejects any other name, so no request can leave the machine.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

function parseArguments(argv) {
    const options = {};
    for (let i = 2; i < argv.length; i += 2) {
        if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
            throw new Error(`invalid argument "${argv[i]}": options are --name value pairs`);
        }
        options[argv[i].slice(2)] = argv[i + 1];
    }
    return options;
}

const options = parseArguments(process.argv);
const scheme = options.scheme ?? 'http';
const subscriptionCount = Number(options.subscriptions ?? 64);
const endpointCount = Number(options.endpoints ?? 1);
const concurrency = Number(options.concurrency ?? 64);
const warmupDeliveries = Number(options['warmup-deliveries'] ?? 2000);
const minDeliveries = Number(options['min-deliveries'] ?? 2000);
const targetSeconds = Number(options['target-seconds'] ?? 1);
const runs = Number(options.runs ?? 5);
const firstPort = Number(scheme === 'https' ? options['https-port'] : options['http-port']);
const payload = fs.readFileSync(options.payload);

function loopbackLookup(hostname, lookupOptions, callback) {
    if (!hostname.endsWith('.bench.test')) {
        callback(Object.assign(new Error(`refusing to resolve ${hostname}`), { code: 'ENOTFOUND' }));
        return;
    }
    if (lookupOptions.all) {
        callback(null, [{ address: '127.0.0.1', family: 4 }]);
    } else {
        callback(null, '127.0.0.1', 4);
    }
}

// The workers bound the requests in flight. maxTotalSockets stays unlimited: it also counts idle
// sockets, so with more origins than connections it would close a pooled connection (and pay a
// new TLS handshake) for almost every request.
const agentOptions = { keepAlive: true, maxSockets: concurrency };
const agent = scheme === 'https'
    ? new https.Agent({ ...agentOptions, ca: fs.readFileSync(options['ca-file']) })
    : new http.Agent(agentOptions);
const transport = scheme === 'https' ? https : http;

// Lowercase base32 of 16 random bytes, the form of revdesk's message ids.
const base32Alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
function newMessageId() {
    const bytes = crypto.randomBytes(16);
    let bits = 0;
    let value = 0;
    let text = 'msg_';
    for (const byte of bytes) {
        value = (value << 8) | byte;
        bits += 8;
        while (bits >= 5) {
            text += base32Alphabet[(value >>> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0) {
        text += base32Alphabet[(value << (5 - bits)) & 31];
    }
    return text;
}

const subscriptions = Array.from({ length: subscriptionCount }, (_, i) => {
    const endpoint = i % endpointCount;
    return {
        host: `r${endpoint}.bench.test`,
        port: firstPort + endpoint,
        path: `/hooks/${i}`,
        key: crypto.randomBytes(32),
    };
});

function deliver(subscription) {
    const id = newMessageId();
    const timestamp = Math.floor(Date.now() / 1000).toString();
    const signature = crypto.createHmac('sha256', subscription.key)
        .update(`${id}.${timestamp}.`)
        .update(payload)
        .digest('base64');
    return new Promise((resolve) => {
        const request = transport.request({
            agent,
            lookup: loopbackLookup,
            host: subscription.host,
            port: subscription.port,
            path: subscription.path,
            method: 'POST',
            headers: {
                'Content-Type': 'application/json',
                'Content-Length': payload.length,
                'User-Agent': 'node-fanout-baseline',
                'RevDesk-Event-Type': 'call_completed',
                'webhook-id': id,
                'webhook-timestamp': timestamp,
                'webhook-signature': `v1,${signature}`,
            },
        }, (response) => {
            response.resume();
            response.on('end', () => resolve(response.statusCode >= 200 && response.statusCode < 300));
            response.on('error', () => resolve(false));
        });
        request.on('error', () => resolve(false));
        request.end(payload);
    });
}

let deliveredTotal = 0;

// Sends `total` deliveries, subscription after subscription as one event fans out, with
// `concurrency` workers.
async function runBatch(total, warmup) {
    let next = 0;
    let delivered = 0;
    let failed = 0;
    const cpuBefore = process.cpuUsage();
    const started = process.hrtime.bigint();
    async function worker() {
        while (next < total) {
            const index = next++;
            if (await deliver(subscriptions[index % subscriptionCount])) {
                delivered++;
            } else {
                failed++;
            }
        }
    }
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpuBefore);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    deliveredTotal += delivered;
    return {
        scheme, store: 'none', subscriptions: subscriptionCount, endpoints: endpointCount,
        concurrency, body_bytes: payload.length, kind: 'fanout', warmup, deliveries: delivered,
        failed, seconds, deliveries_per_second: delivered / seconds, cpu_seconds: cpuSeconds,
        cpu_seconds_per_1000: delivered ? (cpuSeconds * 1000) / delivered : 0,
    };
}

function roundUp(deliveries) {
    return Math.max(1, Math.ceil(deliveries / subscriptionCount)) * subscriptionCount;
}

const warm = await runBatch(roundUp(warmupDeliveries), true);
console.log(JSON.stringify(warm));
const total = roundUp(Math.max(minDeliveries, warm.deliveries_per_second * targetSeconds));
for (let i = 0; i < runs; i++) {
    console.log(JSON.stringify(await runBatch(total, false)));
}
console.log(JSON.stringify({ kind: 'total', deliveries: deliveredTotal }));
agent.destroy();
