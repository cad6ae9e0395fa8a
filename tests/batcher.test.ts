import { describe, expect, it } from '@jest/globals';
import { Batcher } from '../src/batcher.js';

describe('Batcher', () => {
  it('combines the calls of one turn into one flush, in order, and answers each caller', async () => {
    const flushes: number[][] = [];
    const b = new Batcher<number, number>(async (items) => {
      flushes.push([...items]);
      return items.map((i) => i * 10);
    });
    const out = await Promise.all([1, 2, 3].map((i) => b.run(i)));
    expect(out).toEqual([10, 20, 30]);
    expect(flushes).toEqual([[1, 2, 3]]);
    // A later turn is its own flush.
    await expect(b.run(4)).resolves.toBe(40);
    expect(flushes).toEqual([[1, 2, 3], [4]]);
  });

  it('splits a turn into chunks of at most `max`', async () => {
    const sizes: number[] = [];
    const b = new Batcher<number, number>(async (items) => { sizes.push(items.length); return [...items]; }, 2);
    await Promise.all([1, 2, 3, 4, 5].map((i) => b.run(i)));
    expect(sizes).toEqual([2, 2, 1]);
  });

  it('an Error answer fails that item alone; a throwing flush fails its chunk only', async () => {
    const b = new Batcher<number, number>(async (items) => items.map((i) => (i === 2 ? new Error('bad two') : i)));
    const out = await Promise.allSettled([1, 2, 3].map((i) => b.run(i)));
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((out[1] as PromiseRejectedResult).reason.message).toBe('bad two');

    const c = new Batcher<number, number>(async (items) => { if (items.includes(1)) throw new Error('down'); return [...items]; }, 1);
    const res = await Promise.allSettled([1, 2].map((i) => c.run(i)));
    expect(res.map((o) => o.status)).toEqual(['rejected', 'fulfilled']);
  });

  it('a flush answering the wrong number of items fails the chunk instead of misattributing answers', async () => {
    const b = new Batcher<number, number>(async () => [1]);
    await expect(Promise.all([b.run(1), b.run(2)])).rejects.toThrow('a batch of 2 got 1 answers');
  });
});

describe('Limiter', () => {
  it('runs at most `max` at once, the rest in arrival order, and frees the slot on failure too', async () => {
    const { Limiter } = await import('../src/batcher.js');
    const limit = new Limiter(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const work = (i: number) => limit.run(async () => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 5));
      running -= 1;
      order.push(i);
      if (i === 1) throw new Error('one fails');
      return i;
    });
    const out = await Promise.allSettled([0, 1, 2, 3, 4].map(work));
    expect(most).toBe(2);
    expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(order.slice(2)).toEqual([2, 3, 4]);
    await expect(limit.run(async () => 'free')).resolves.toBe('free');
  });

  it('once opened, lets everything waiting start at once, and no longer limits', async () => {
    const { Limiter } = await import('../src/batcher.js');
    const limit = new Limiter(1);
    let release!: () => void;
    const first = limit.run(() => new Promise<void>((r) => { release = r; }));
    const started: number[] = [];
    const waiting = [1, 2].map((i) => limit.run(async () => { started.push(i); }));
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([]);
    limit.open();
    await Promise.all(waiting);
    expect(started).toEqual([1, 2]);
    await limit.run(async () => { started.push(3); });
    expect(started).toEqual([1, 2, 3]);
    release();
    await first;
  });

  it('gives a freed slot to the most urgent waiting caller first, first come first served within a priority', async () => {
    const { Limiter } = await import('../src/batcher.js');
    const limit = new Limiter(1);
    let release!: () => void;
    const first = limit.run(() => new Promise<void>((r) => { release = r; }));
    const order: string[] = [];
    const waiting = [['later-a', 3], ['urgent-a', 1], ['later-b', 3], ['urgent-b', 1], ['middle', 2]].map(([name, p]) =>
      limit.run(async () => { order.push(name as string); }, p as number));
    release();
    await first;
    await Promise.all(waiting);
    expect(order).toEqual(['urgent-a', 'urgent-b', 'middle', 'later-a', 'later-b']);
  });
});


describe('batcherPer', () => {
  it('makes one Batcher per key, the first time the key asks', async () => {
    const { batcherPer } = await import('../src/batcher.js');
    const flushes: string[] = [];
    const per = batcherPer((key: { name: string }) => async (items: readonly number[]) => { flushes.push(`${key.name}:${items.join(',')}`); return [...items]; });
    const a = { name: 'a' };
    const b = { name: 'b' };
    expect(per(a)).toBe(per(a));
    expect(per(a)).not.toBe(per(b));
    await Promise.all([per(a).run(1), per(a).run(2), per(b).run(3)]);
    expect(flushes.sort()).toEqual(['a:1,2', 'b:3']);
  });
});
