// ShareDB with sharedb-postgres behind a WebSocket, as the peer for `spacesync load`.
//   node server.js <port> <postgres url>
// Prints "listening <port>" when ready.
const http = require('http');
const WebSocket = require('ws');
const ShareDB = require('sharedb');
const ShareDBPostgres = require('sharedb-postgres');
const WebSocketJSONStream = require('@teamwork/websocket-json-stream');

const [port, url] = process.argv.slice(2);
const db = new ShareDBPostgres({ connectionString: url, max: 8 });
const backend = new ShareDB({ db });
const server = http.createServer();
const wss = new WebSocket.Server({ server });
wss.on('connection', (ws) => {
  ws._socket && ws._socket.setNoDelay(true);
  backend.listen(new WebSocketJSONStream(ws));
});
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${port}`));
process.on('SIGTERM', () => process.exit(0));
