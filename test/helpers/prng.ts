/** The one seeded PRNG lives in shared/ (the demo uses it too); tests and benches import it from here. */
export { prng } from '../../shared/prng.js';
