// `node --import ./bench/node20-conformance-register.mjs ...`: installs the hooks above.
import { register } from 'node:module';
register('./node20-conformance-hooks.mjs', import.meta.url);
