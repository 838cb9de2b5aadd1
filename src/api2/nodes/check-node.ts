/**
 * The `{node}` URL parameter of `/nodes/{node}/...`: `localhost` or this node's name (the one in
 * its UPIDs). Stowage is a single node, so any other name is refused.
 */
import { BadRequestError } from '../../errors.js';
import type { ServerContext } from '../../http/context.js';

export function checkNode(server: ServerContext, node: string): void {
  if (node !== 'localhost' && node !== server.tasks.node) {
    throw new BadRequestError(`parameter verification failed - 'node': no such node '${node}'`);
  }
}
