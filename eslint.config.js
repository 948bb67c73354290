// ESLint for the whole tree: typescript-eslint's strict, type-aware rules (npm run lint).
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', '.tools/**', 'packages/tailnet-wasm/build/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        project: [
          './packages/*/tsconfig.json',
          './apps/*/tsconfig.json',
          './scripts/tsconfig.json',
          './scripts/tsconfig.tests.json',
        ],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Numbers and booleans read fine in messages; objects and undefined still need an explicit format.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `(r) => setTimeout(r, ms)` and `() => void x` are idiomatic callbacks, not confusion.
      '@typescript-eslint/no-confusing-void-expression': [
        'error',
        { ignoreArrowShorthand: true, ignoreVoidOperator: true },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // noUncheckedIndexedAccess is on: `xs[i]!` marks an index the code has just bounds-checked or
      // a regex group that matched; the rule would turn each into a runtime check that cannot fail.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // fastify handlers and the async interfaces we implement are async by contract, awaiting or not.
      '@typescript-eslint/require-await': 'off',
    },
  },
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
);
