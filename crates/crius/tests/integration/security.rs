//! Issue 5: the security context, mounts and namespaces, each observed from
//! inside a running container.

crate::tests![];
