// ESLint flat config. `make lint` runs it; `make test` runs lint first, so CI fails on a layer
// violation. The layer rule is the one in docs/architecture.md:
//   cli, shim -> backends -> volumes;  ttrpc stands alone (imports nothing of ours);
//   cli may use shim (its config, install-runtime), never the reverse; no import cycles;
//   csi (the CSI plugin) is an edge beside the shim: cli -> csi -> volumes.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importPlugin from 'eslint-plugin-import';

/** Each layer and the layers it must not import (anything above it, and ttrpc for the lower ones). */
export const LAYER_ZONES = [
  { target: './src/ttrpc', from: ['./src/shim', './src/cli', './src/backends', './src/volumes', './src/csi'], message: 'src/ttrpc stands alone: it imports nothing of katavol.' },
  { target: './src/volumes', from: ['./src/backends', './src/shim', './src/cli', './src/ttrpc', './src/csi'], message: 'src/volumes is the bottom layer: move what it needs down into src/volumes.' },
  { target: './src/backends', from: ['./src/shim', './src/cli', './src/ttrpc', './src/csi'], message: 'backends sit below the shim and the CLI: move the shared piece down or pass it in.' },
  { target: './src/shim', from: ['./src/cli', './src/csi'], message: 'the shim must not import the CLI or the CSI plugin.' },
  { target: './src/csi', from: ['./src/cli', './src/shim', './src/backends', './src/ttrpc'], message: 'src/csi is an edge beside the shim: it uses src/volumes only (the CLI starts it).' },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/peers/ttrpcpeer/**', 'eslint.config.mjs', 'stryker.conf.*', 'test/mutate/*.{cjs,mjs}'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { import: importPlugin },
    settings: {
      'import/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import/resolver': { node: { extensions: ['.ts', '.js', '.json'] } },
      'import/extensions': ['.ts', '.js'],
    },
    rules: {
      'import/no-restricted-paths': ['error', { zones: LAYER_ZONES }],
      // disableScc: the plugin's per-process graph cache would hide a cycle made by linted (unsaved) text.
      'import/no-cycle': ['error', { ignoreExternal: true, disableScc: true }],
      '@typescript-eslint/no-floating-promises': 'error',
      // `require('./x') as typeof import('./x')` is how the start path loads modules lazily.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-require-imports': 'off', // lazy require() keeps the shim's start path short
      // Removing `async` from a function without await would turn its rejections into sync throws.
      '@typescript-eslint/require-await': 'off',
      // Frame types, flags and status codes arrive as numbers off the wire and are compared with enums.
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Tests read JSON written by the code under test (JSON.parse is `any`) and assert on its fields.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
);
