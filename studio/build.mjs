// Builds the studio into dist/: the TypeScript bundle and its stylesheet under assets/ with a
// content hash in their names (served immutable), and index.html naming them (served no-cache).
// `node build.mjs` (npm run build); the gateway serves dist/ at /studio/.
import * as esbuild from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");

await rm(dist, { recursive: true, force: true });
await mkdir(path.join(dist, "assets"), { recursive: true });

const result = await esbuild.build({
  entryPoints: [path.join(here, "src", "main.tsx")],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: path.join(dist, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});

// The output files by kind, as the page must name them.
const outputs = Object.keys(result.metafile.outputs).map((p) => path.basename(p));
const script = outputs.find((name) => name.endsWith(".js"));
const style = outputs.find((name) => name.endsWith(".css"));
if (!script || !style) throw new Error(`unexpected build outputs: ${outputs.join(", ")}`);

const template = await readFile(path.join(here, "src", "index.html"), "utf8");
const page = template
  .replace("%SCRIPT%", `/studio/assets/${script}`)
  .replace("%STYLE%", `/studio/assets/${style}`);
await writeFile(path.join(dist, "index.html"), page);
console.log(`studio built: dist/index.html, assets/${script}, assets/${style}`);
