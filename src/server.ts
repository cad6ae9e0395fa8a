// API only: production runs this apart from the workers and scales it horizontally.
import { boot } from './boot.js';

await boot({ api: true, worker: false });
