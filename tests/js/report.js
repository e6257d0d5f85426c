// What every script of tests/js prints: one JSON summary line on stdout
// (read by tests/integration/test_js_client.py), exit status 1 on failure.
"use strict";

function report(main, progress = () => undefined) {
  main().then(
    ({ checks, facts }) => {
      console.log(JSON.stringify({ client: "reduct-js", ok: true, checks, facts }));
    },
    (err) => {
      console.error(err);
      const error = String((err && err.message) || err);
      console.log(JSON.stringify({ client: "reduct-js", ok: false, error, checks: progress() }));
      process.exit(1);
    },
  );
}

module.exports = { report };
