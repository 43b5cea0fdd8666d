/**
 * How a presented API token is checked, on every host (no node:crypto): byte by byte over the
 * presented token's whole length, differences OR-ed together with the length difference, so the
 * time taken depends on what the client sent and never on how much of the expected token it got
 * right, nor on the expected token's length.
 */
const encoder = new TextEncoder();

export function tokenChecker(expected: string): (presented: string) => boolean {
  const want = encoder.encode(expected);
  return (presented) => {
    const got = encoder.encode(presented);
    let difference = want.length ^ got.length;
    for (let i = 0; i < got.length; i++) difference |= got[i]! ^ want[i % want.length]!;
    return difference === 0;
  };
}
