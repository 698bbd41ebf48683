/** Reading the end of a daemon's log for error messages. */
import { readFile } from 'node:fs/promises';

export async function readLogTail(file: string, lines = 15): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
