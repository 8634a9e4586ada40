// Type-checks every dashboard under charts/strom/dashboards against Grafana's published
// schema: each JSON becomes an object literal typed `Dashboard` from @grafana/schema, so tsc
// rejects unknown fields and wrong types, then `tsc --noEmit --strict` runs over them.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dashboards = join(here, "..", "..", "charts", "strom", "dashboards");
const out = join(here, "generated");
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
const files = readdirSync(dashboards).filter((f) => f.endsWith(".json"));
if (files.length === 0) throw new Error(`no dashboards in ${dashboards}`);
for (const file of files) {
  const json = readFileSync(join(dashboards, file), "utf8");
  writeFileSync(
    join(out, file.replace(/\.json$/, ".ts")),
    `import type { Dashboard } from "@grafana/schema";\nexport const dashboard: Dashboard = ${json};\n`,
  );
}
execFileSync(
  join(here, "node_modules", ".bin", "tsc"),
  ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext",
   "--target", "es2022", ...files.map((f) => join(out, f.replace(/\.json$/, ".ts")))],
  { stdio: "inherit" },
);
console.log(`${files.length} dashboards type-check against @grafana/schema`);
