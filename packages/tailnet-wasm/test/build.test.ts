import { readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildInfo, wasmPath } from '@krkn/tailnet-wasm';

const root = new URL('../../../', import.meta.url);

describe('the wasm build', () => {
  it('uses the tailscale.com version pinned in scripts/versions.env', () => {
    const pinned = /^TAILSCALE_VERSION=(\S+)$/m.exec(readFileSync(new URL('scripts/versions.env', root), 'utf8'))?.[1];
    // `require tailscale.com vX` on its own, or a line of a `require ( … )` block.
    const required = /^(?:require)?\s*tailscale\.com (\S+)$/m.exec(
      readFileSync(new URL('packages/tailnet-wasm/go/go.mod', root), 'utf8'),
    )?.[1];
    expect(pinned).toMatch(/^v\d+\.\d+\.\d+$/);
    expect(required).toBe(pinned);
    expect(buildInfo().tailscaleVersion).toBe(pinned);
  });

  it('omits log upload and records the artifact it built', () => {
    const info = buildInfo();
    expect(info.tags.split(',')).toContain('ts_omit_logtail');
    expect(info.tags.split(',')).not.toContain('tailscale_go');
    expect(statSync(wasmPath).size).toBe(info.wasmBytes);
  });
});
