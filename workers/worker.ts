// Workers only: queue processors and job schedulers, scaled apart from the API.
import { boot } from '../src/boot.js';

await boot({ api: false, worker: true });
