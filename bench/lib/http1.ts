// A minimal keep-alive HTTP/1.1 client for load generation (what autocannon does): requests
// are written as ready-made text on raw sockets and answers are read by status line and
// Content-Length only. node:http spends several times the CPU per request on header objects,
// streams and its agent, CPU the server under test then lacks on a small machine.
// One request at a time per connection (no pipelining); answers must carry Content-Length
// (Fastify's JSON answers do); anything else fails that request.
import net from 'node:net';

type Pending = { resolve: (outcome: string) => void; timer: NodeJS.Timeout };

class Connection {
  readonly socket: net.Socket;
  pending: Pending | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private status = 0;
  private need = -1;

  constructor(host: string, port: number, private readonly onIdle: (c: Connection) => void, private readonly onClose: (c: Connection) => void) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => this.read(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? err.message));
    this.socket.on('close', () => {
      this.fail('closed');
      this.onClose(this);
    });
  }

  send(request: string, pending: Pending): void {
    this.pending = pending;
    this.socket.write(request, 'utf8');
  }

  private read(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.need < 0) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.toString('latin1', 0, end);
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
      this.status = Number(head.slice(9, 12));
      if (length === null) return void this.socket.destroy(new Error('answer without content-length'));
      this.need = Number(length[1]);
      this.buf = this.buf.subarray(end + 4);
    }
    if (this.buf.length < this.need) return;
    this.buf = this.buf.subarray(this.need);
    this.need = -1;
    this.finish(this.status === 201 ? 'ok' : `status ${this.status}`);
    this.onIdle(this);
  }

  private finish(outcome: string): void {
    const p = this.pending;
    if (p === undefined) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.resolve(outcome);
  }

  fail(outcome: string): void {
    this.finish(outcome);
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

/** Up to `max` keep-alive connections to one server; requests beyond that wait their turn in order. */
export class Http1Pool {
  private readonly idle: Connection[] = [];
  private readonly busy = new Set<Connection>();
  private readonly queue: { request: string; pending: Pending }[] = [];
  private open = 0;
  private readonly host: string;
  private readonly port: number;

  constructor(baseUrl: string, private readonly max: number, private readonly timeoutMs: number) {
    const url = new URL(baseUrl);
    this.host = url.hostname;
    this.port = Number(url.port);
  }

  /** Resolves to 'ok' (201), 'status N', or why no answer came ('timeout', 'ECONNRESET'…); never rejects. */
  send(request: string): Promise<string> {
    return new Promise((resolve) => {
      // Counted from the send, not from when a connection frees up: a request queued behind a
      // stalled server times out like one the server holds.
      const pending: Pending = {
        resolve,
        timer: setTimeout(() => {
          const queued = this.queue.findIndex((q) => q.pending === pending);
          if (queued >= 0) {
            this.queue.splice(queued, 1);
            resolve('timeout');
          } else {
            this.holderOf(pending)?.fail('timeout');
          }
        }, this.timeoutMs),
      };
      const conn = this.idle.pop() ?? (this.open < this.max ? this.connect() : undefined);
      if (conn === undefined) this.queue.push({ request, pending });
      else this.dispatch(conn, request, pending);
    });
  }

  close(): void {
    for (const c of this.idle) c.socket.destroy();
    this.idle.length = 0;
  }

  private holderOf(p: Pending): Connection | undefined {
    for (const c of this.busy) if (c.pending === p) return c;
    return undefined;
  }

  private connect(): Connection {
    this.open++;
    const conn = new Connection(this.host, this.port, (c) => this.release(c), (c) => {
      this.open--;
      this.busy.delete(c);
      const i = this.idle.indexOf(c);
      if (i >= 0) this.idle.splice(i, 1);
      const next = this.queue.shift();
      if (next !== undefined) this.dispatch(this.connect(), next.request, next.pending);
    });
    return conn;
  }

  private dispatch(conn: Connection, request: string, pending: Pending): void {
    this.busy.add(conn);
    conn.send(request, pending);
  }

  private release(conn: Connection): void {
    const next = this.queue.shift();
    if (next !== undefined) return conn.send(next.request, next.pending);
    this.busy.delete(conn);
    this.idle.push(conn);
  }
}
