#!/usr/bin/env node
// Launcher of `amk` (package.json "bin"; `npx amk`, `npm run amk --`): runs cli/amk.ts through tsx's loader, in
// this process, from a fresh clone without a build step.
import { register } from "tsx/esm/api";

register();
await import("../amk.ts");
