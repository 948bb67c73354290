// The few WebAssembly JS API types this package uses. Node 20 has the API, but @types/node 20
// does not declare it (only lib.dom does, which a Node package should not pull in).
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace WebAssembly {
    interface Module {
      readonly __brand: 'WebAssembly.Module';
    }
    interface Instance {
      readonly exports: Record<string, unknown>;
    }
    type Imports = Record<string, Record<string, unknown>>;
    function compile(bytes: Uint8Array): Promise<Module>;
    function instantiate(module: Module, imports?: Imports): Promise<Instance>;
  }
}

export {};
