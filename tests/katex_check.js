// Render math spans with KaTeX and report the ones that fail.
// usage: node katex_check.js PATH_TO_KATEX_PACKAGE < spans.json
// stdin: [{"tex": "...", "display": true|false}, ...]; stdout: [{"tex", "error"}, ...]
"use strict";
const katex = require(process.argv[2]);

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const failures = [];
  for (const span of JSON.parse(input)) {
    try {
      // strict: anything KaTeX would only warn about (e.g. text in maths) fails as well
      katex.renderToString(span.tex, {
        displayMode: span.display, throwOnError: true, strict: "error",
      });
    } catch (error) {
      failures.push({ tex: span.tex, error: String(error.message) });
    }
  }
  process.stdout.write(JSON.stringify(failures));
});
