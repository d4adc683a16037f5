/**
 * Splits a stream of text into top-level JSON objects, as grpc-gateway reads a streaming
 * request body: `{"create_request":{…}} {"progress_request":{}}`, with any whitespace (or
 * none) between them. It tracks only brace depth and string state; each complete object is
 * then handed to JSON.parse, which judges it. Text outside an object is an error.
 */
export class JsonObjectSplitter {
  private buffer = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Where in `buffer` scanning resumes. */
  private scanned = 0;

  constructor(private readonly objectBytesMax: number) {}

  /** Feeds text; returns the objects it completed, as text. Throws on text outside objects. */
  push(text: string): string[] {
    this.buffer += text;
    const objects: string[] = [];
    let start = 0;
    for (let i = this.scanned; i < this.buffer.length; i++) {
      const c = this.buffer[i]!;
      if (this.depth === 0) {
        if (c === ' ' || c === '\n' || c === '\r' || c === '\t') {
          start = i + 1;
          continue;
        }
        if (c !== '{') throw new SyntaxError(`expected a JSON object, found ${JSON.stringify(c)}`);
        start = i;
        this.depth = 1;
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth++;
      else if (c === '}' || c === ']') {
        this.depth--;
        if (this.depth === 0) {
          objects.push(this.buffer.slice(start, i + 1));
          start = i + 1;
        }
      }
    }
    this.buffer = this.buffer.slice(start);
    this.scanned = this.buffer.length;
    if (this.buffer.length > this.objectBytesMax)
      throw new RangeError(`a JSON object in the stream exceeds ${this.objectBytesMax} bytes`);
    return objects;
  }

  /** True when the text so far ended between objects. */
  get complete(): boolean {
    return this.depth === 0 && this.buffer.trim() === '';
  }
}
