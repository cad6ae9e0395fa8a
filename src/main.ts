// `npm start`: API and worker in one process, for a single machine or a newcomer's laptop.
import { boot } from './boot.js';

await boot({ api: true, worker: true });
