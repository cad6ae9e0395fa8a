/** Jest runs the TypeScript sources as native ESM (jose 6 is ESM-only), transformed by swc. */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['@swc/jest', {
      jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
      module: { type: 'es6' },
    }],
  },
  globalSetup: '<rootDir>/tests/helpers/global-setup.mjs',
  testTimeout: 30000,
  maxWorkers: 2,
};
