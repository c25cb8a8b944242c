// Flat ESLint config: typescript-eslint recommended rules plus the project's layering rule:
// domain code in core/ (outside core/adapters/) must not import an SDK or the PKCS#11 binding.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/**", "cdk.out/**", ".amk/**", "**/*.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        URL: "readonly",
      },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "off",
    },
  },
  {
    files: ["core/**/*.ts"],
    ignores: ["core/adapters/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["pkcs11js", "@aws-sdk/*", "aws-cdk-lib", "aws-cdk-lib/*"],
              message: "core/ domain code imports no SDK: put it in core/adapters/.",
            },
            { group: ["**/adapters/**"], message: "Domain code depends on ports, not adapters." },
          ],
        },
      ],
    },
  },
);
