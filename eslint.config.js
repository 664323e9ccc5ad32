// Lint for mistakes, not for taste: the recommended rules of ESLint and typescript-eslint.
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'coverage/', 'stubs/', 'bench/.build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  // The console's page runs in the browser, as plain JavaScript served from the package.
  { files: ['console/**/*.js'], languageOptions: { globals: globals.browser } },
  // CommonJS only where a Node too old for the rest must still parse the file (bin/check-node.cjs).
  { files: ['**/*.cjs'], rules: { '@typescript-eslint/no-require-imports': 'off' } },
)
