// The `spacesync load` closed-loop workload against ShareDB: spaces x clients, each client one
// op in flight, the next after ShareDB acknowledges it (after sharedb-postgres committed it).
// A space is one json0 document; ops are the same mix as spacesync's harness in spirit:
// create cards (oi), drags (x/y replaced), renames, connections.
//   node load.js <port> <spaces> <clientsPerSpace> <durationS> <warmupS>
// Prints one JSON line with the same field names as `spacesync load`.
const WebSocket = require('ws');
const ShareDB = require('sharedb/lib/client');

const [port, spaces, perSpace, durationS, warmupS] = process.argv.slice(2).map(Number);
const latencies = [];
let acked = 0, fanout = 0, errors = 0, measuring = false;

function connect() {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    socket.on('open', () => { socket._socket.setNoDelay(true); resolve(new ShareDB.Connection(socket)); });
    socket.on('error', reject);
  });
}
// jsonb reorders keys: compare documents with sorted keys.
const canonical = (value) => JSON.stringify(value, (key, v) =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v);
const fetchDoc = (doc) => new Promise((res, rej) => doc.fetch((e) => (e ? rej(e) : res())));
const subscribe = (doc) => new Promise((res, rej) => doc.subscribe((e) => (e ? rej(e) : res())));
const create = (doc) => new Promise((res) => doc.create({ cards: {}, connections: {} }, () => res()));

async function client(space, index, end) {
  const connection = await connect();
  const doc = connection.get('spaces', space);
  await subscribe(doc);
  if (!doc.type) await create(doc);
  doc.on('op', (op, source) => { if (!source && measuring) fanout++; });
  const cards = [];
  let n = 0;
  while (Date.now() < end) {
    n++;
    let op;
    const roll = Math.random();
    if (cards.length < 2 || roll < 0.15) {
      const id = `c${index}-${n}`;
      cards.push(id);
      op = [{ p: ['cards', id], oi: { id, x: n % 2000, y: 20, z: 1, name: `card ${n}` } }];
    } else if (roll < 0.3) {
      const id = `k${index}-${n}`;
      op = [{ p: ['connections', id], oi: { id, startItemId: cards[0], endItemId: cards[cards.length - 1] } }];
    } else if (roll < 0.4) {
      const card = cards[n % cards.length];
      op = [{ p: ['cards', card, 'name'], od: doc.data.cards[card].name, oi: `renamed ${n}` }];
    } else {
      const card = cards[n % cards.length];
      const c = doc.data.cards[card];
      op = [{ p: ['cards', card, 'x'], od: c.x, oi: n % 2000 }, { p: ['cards', card, 'y'], od: c.y, oi: (n * 7) % 2000 }];
    }
    const started = process.hrtime.bigint();
    await new Promise((resolve) => doc.submitOp(op, (error) => {
      if (error) errors++;
      else if (measuring) { acked++; latencies.push(Number(process.hrtime.bigint() - started) / 1e6); }
      resolve();
    }));
  }
  return { connection, doc };
}

(async () => {
  const start = Date.now();
  const end = start + (warmupS + durationS) * 1000;
  setTimeout(() => { measuring = true; }, warmupS * 1000);
  setTimeout(() => { measuring = false; }, (warmupS + durationS) * 1000);
  const tasks = [];
  for (let s = 0; s < spaces; s++) {
    for (let c = 0; c < perSpace; c++) tasks.push(client(`peer-${process.pid}-s${s}`, s * perSpace + c, end));
  }
  const clients = await Promise.all(tasks);
  // Checker: every client's view equals a fresh fetch.
  let diverged = 0;
  const checker = await connect();
  for (const { doc } of clients) {
    await new Promise((r) => setTimeout(r, 0));
    const fresh = checker.get('spaces', doc.id);
    await fetchDoc(fresh);
    if (canonical(fresh.data) !== canonical(doc.data) || fresh.version !== doc.version) diverged++;
  }
  latencies.sort((a, b) => a - b);
  const q = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : 0);
  console.log(JSON.stringify({
    peer: 'sharedb', acked_ops_per_s: acked / durationS, p50_ms: q(0.5), p95_ms: q(0.95), p99_ms: q(0.99),
    max_ms: latencies.length ? latencies[latencies.length - 1] : 0, fanout_per_s: fanout / durationS,
    rejected: 0, lost: 0, duplicated: 0, diverged, errors,
    spaces, clients_per_space: perSpace, duration_s: durationS, warmup_s: warmupS, rate: null,
  }));
  process.exit(0);
})().catch((error) => { console.error(error); process.exit(1); });
