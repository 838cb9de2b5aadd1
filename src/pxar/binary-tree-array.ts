/**
 * The order of a pxar goodbye table (pxar `binary_tree_array.rs`, from casync's `camakebst.c`):
 * the items sorted by hash, laid out as a complete binary search tree in an array, the root at
 * index 0 and the children of `i` at `2i+1` (smaller or equal) and `2i+2` (larger or equal). A
 * lookup then walks strictly forward through the table, which suits reads from a chunked archive.
 *
 * The layout is the one where an in-order walk of the implicit heap indices visits the sorted
 * items in order, so that is how we build it.
 */

/**
 * For `n` sorted items, `order[i]` is the sorted index of the item that goes to table slot `i`.
 */
export function binaryTreeOrder(n: number): number[] {
  const order = new Array<number>(n);
  let next = 0;
  // iterative in-order walk of the complete tree with n nodes
  const stack: number[] = [];
  let node = 0;
  while (stack.length > 0 || node < n) {
    while (node < n) {
      stack.push(node);
      node = 2 * node + 1;
    }
    const top = stack.pop()!;
    order[top] = next++;
    node = 2 * top + 2;
  }
  return order;
}

/**
 * Every slot of a binary-tree-ordered table whose key compares equal to the search key, in the
 * order a walk from the root finds them. `compareAt(i)` compares the searched key with slot `i`
 * (negative: the key is smaller). Equal keys (hash collisions) can sit in both subtrees of a
 * match, so both are searched below one; otherwise one path from the root, O(log n) slots.
 */
export async function searchBinaryTree(
  n: number,
  compareAt: (slot: number) => Promise<number>,
  onMatch: (slot: number) => Promise<boolean>,
): Promise<boolean> {
  const pending = [0];
  while (pending.length > 0) {
    let i = pending.pop()!;
    while (i < n) {
      const c = await compareAt(i);
      if (c < 0) i = 2 * i + 1;
      else if (c > 0) i = 2 * i + 2;
      else {
        if (await onMatch(i)) return true;
        pending.push(2 * i + 2);
        i = 2 * i + 1;
      }
    }
  }
  return false;
}
