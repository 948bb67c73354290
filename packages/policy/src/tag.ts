/**
 * Why `tag` is not a tag a node may advertise or a policy may own (`tag:` and a name of letters,
 * digits and dashes that starts with a letter or digit), or undefined when it is one.
 */
export function tagError(tag: string): string | undefined {
  return /^tag:[a-z0-9][a-z0-9-]*$/i.test(tag) ? undefined : `${JSON.stringify(tag)} is not a tag (tag:name)`;
}
