// EngineWebSocket against a real `ws` server on loopback: the merging both ways is pure stream
// logic, so no tailnet is needed to check it keeps every byte, in order, within the size cap.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket as NodeWebSocket, WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { EngineWebSocket, closeSockets, newSocketOwner } from '../src/websocket.js';

const cap = 32 << 10;
const servers: WebSocketServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    for (const client of server.clients) client.terminate();
    await new Promise((r) => server.close(r));
  }
});

/** A server, and a client connected to it the way coder/websocket connects. */
async function connect(): Promise<{ client: EngineWebSocket; peer: ServerSocket }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  servers.push(server);
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = new EngineWebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  client.binaryType = 'arraybuffer';
  await once(client, 'open');
  const [peer] = (await accepted) as [ServerSocket];
  return { client, peer };
}

function collect(client: EngineWebSocket): Buffer[] {
  const got: Buffer[] = [];
  client.addEventListener('message', (e) => got.push(Buffer.from((e as { data: ArrayBuffer }).data)));
  return got;
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

describe('EngineWebSocket', () => {
  it('sends the writes of one task as one message, and splits at the 32 KiB cap', async () => {
    const { client, peer } = await connect();
    const got: Buffer[] = [];
    peer.on('message', (data: Buffer) => got.push(data));
    const packets = Array.from({ length: 60 }, () => randomBytes(1280));
    for (const p of packets) client.send(new Uint8Array(p));
    await settle();
    expect(Buffer.concat(got).equals(Buffer.concat(packets))).toBe(true);
    expect(got.length).toBe(Math.ceil((60 * 1280) / (Math.floor(cap / 1280) * 1280)));
    expect(got.every((m) => m.length <= cap)).toBe(true);
  });

  it('hands Go the messages of one socket read as one event, bytes in order, each at most 32 KiB', async () => {
    const { client, peer } = await connect();
    const got = collect(client);
    const messages = Array.from({ length: 50 }, () => randomBytes(1000));
    peer.send(Buffer.concat(messages.slice(0, 1))); // alone, then a burst the client reads at once
    await settle();
    for (const m of messages.slice(1)) peer.send(m);
    await settle();
    expect(Buffer.concat(got).equals(Buffer.concat(messages))).toBe(true);
    expect(got.length).toBeLessThan(messages.length / 2);
    expect(got.every((m) => m.length <= cap)).toBe(true);
  });

  it('hands Go a lone message without copying it', async () => {
    const { client } = await connect();
    const got: unknown[] = [];
    client.addEventListener('message', (e) => got.push((e as { data: unknown }).data));
    const sent = new ArrayBuffer(1000);
    // As `ws` emits a binary message with binaryType 'arraybuffer': a new ArrayBuffer of its bytes.
    client.emit('message', sent, true);
    await settle();
    expect(got).toHaveLength(1);
    expect(got[0]).toBe(sent);
  });

  it('offers no permessage-deflate, even to a server that would accept it', async () => {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true });
    servers.push(server);
    await once(server, 'listening');
    const client = new EngineWebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await once(client, 'open');
    expect(client.extensions).toBe('');
    // The same server does deflate for a plain `ws` client, so the check above can fail.
    const plain = new NodeWebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await once(plain, 'open');
    expect(plain.extensions).toContain('permessage-deflate');
    plain.terminate();
    client.terminate();
  });

  it('counts wire messages and the Go calls they took, per owner', async () => {
    const { client, peer } = await connect();
    const owner = (client as unknown as { owner: ReturnType<typeof newSocketOwner> }).owner;
    peer.on('message', () => undefined);
    for (let i = 0; i < 10; i++) client.send(new Uint8Array(100));
    await settle();
    expect(owner.traffic).toMatchObject({ sendsFromGo: 10, messagesOut: 1, bytesOut: 1000 });
  });

  it('delivers nothing to a Go program that has exited, and closeSockets closes its sockets', async () => {
    const { client, peer } = await connect();
    const got = collect(client);
    const owner = (client as unknown as { owner: ReturnType<typeof newSocketOwner> }).owner;
    owner.exited = true; // its callbacks would now throw "Go program has already exited"
    peer.send(randomBytes(10));
    peer.close();
    await settle();
    expect(got).toEqual([]);
    expect(owner.traffic.messagesIn).toBe(1);

    const second = await connect();
    const secondOwner = (second.client as unknown as { owner: ReturnType<typeof newSocketOwner> }).owner;
    closeSockets(secondOwner);
    await settle();
    expect(second.client.readyState).toBe(EngineWebSocket.CLOSED);
    expect(secondOwner.sockets.size).toBe(0);
  });
});
