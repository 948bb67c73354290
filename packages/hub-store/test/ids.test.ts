// Event and subscription ids: drawn from a pooled CSPRNG buffer, each byte used once.

import { describe, expect, it } from 'vitest';
import { newEventId } from '@krkn/hub-store';
import { newSubscriptionId } from '../src/types.js';

describe('ids', () => {
  it('are distinct across many refills of the random pool, and keep their shape', () => {
    // 4,000 ids of 8 random bytes: the 4 KiB pool refills about eight times.
    const events = Array.from({ length: 2000 }, () => newEventId(1_700_000_000_000));
    const subs = Array.from({ length: 2000 }, () => newSubscriptionId());
    expect(new Set([...events, ...subs].map((id) => id.slice(-16))).size).toBe(4000);
    for (const id of events) expect(id).toMatch(/^evt_0loyw3v28[0-9a-f]{16}$/);
    for (const id of subs) expect(id).toMatch(/^sub_[0-9a-f]{16}$/);
  });

  it('sort by time: a later millisecond sorts after', () => {
    expect(newEventId(1_700_000_000_001) > newEventId(1_700_000_000_000)).toBe(true);
  });
});
