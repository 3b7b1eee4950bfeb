//! Xenstore paths: which strings name a node, and how a relative path names
//! one under the requester's domain (docs/misc/xenstore.txt, "Paths").

use alloc::string::String;
use core::fmt::Write;

use super::wire::{XsError, ABS_PATH_MAX, REL_PATH_MAX};
use crate::xen::DomId;

/// `/local/domain/<domid>`, the home of a domain's keys and the base of its
/// relative paths (the reply to XS_GET_DOMAIN_PATH).
pub fn domain_path(domid: DomId) -> String {
    let mut s = String::with_capacity(24);
    let _ = write!(s, "/local/domain/{domid}");
    s
}

/// Whether `c` may appear in a path component: ASCII letters, digits and
/// `-/_@` (xenstore.txt: "the characters permitted are ASCII
/// alphanumerics plus the four punctuation characters -/_@").
fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Whether `p` is a special watch path (`@introduceDomain`,
/// `@releaseDomain`): watchable, never a node.
pub fn is_special(p: &str) -> bool {
    p.starts_with('@')
}

/// The absolute path a request names, from its NUL-terminated or bare
/// argument: relative paths are put under `domain_path(domid)`. Errors with
/// EINVAL for an empty path, a character outside the permitted set, `//`, a
/// trailing `/` (except the root) or a length past Xen's limits.
pub fn canonicalize(arg: &[u8], domid: DomId) -> Result<String, XsError> {
    let arg = match arg.split_last() {
        Some((0, rest)) => rest,
        _ => arg,
    };
    if arg.is_empty() || !arg.iter().all(|&c| valid_char(c)) {
        return Err(XsError::Einval);
    }
    // Checked above: every byte is ASCII.
    let s = core::str::from_utf8(arg).map_err(|_| XsError::Einval)?;
    if is_special(s) {
        return if s.len() <= REL_PATH_MAX && !s.contains('/') {
            Ok(String::from(s))
        } else {
            Err(XsError::Einval)
        };
    }
    if s.contains("//") || (s.len() > 1 && s.ends_with('/')) {
        return Err(XsError::Einval);
    }
    if s.starts_with('/') {
        if s.len() > ABS_PATH_MAX {
            return Err(XsError::Einval);
        }
        return Ok(String::from(s));
    }
    if s.len() > REL_PATH_MAX {
        return Err(XsError::Einval);
    }
    let mut abs = domain_path(domid);
    abs.push('/');
    abs.push_str(s);
    if abs.len() > ABS_PATH_MAX {
        return Err(XsError::Einval);
    }
    Ok(abs)
}

/// The parent of an absolute path (`None` for the root).
pub fn parent(p: &str) -> Option<&str> {
    if p == "/" {
        return None;
    }
    match p.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&p[..i]),
        None => None,
    }
}

/// Whether `p` is `ancestor` or below it.
pub fn is_within(p: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return p.starts_with('/');
    }
    p == ancestor || (p.starts_with(ancestor) && p.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// `p` as a client that registered `watched` (maybe relative) sees it: a
/// relative watch reports paths relative to the domain path (xenstore.txt,
/// WATCH: "the path is relative if the watch was registered relative").
pub fn as_seen<'a>(p: &'a str, relative: bool, domain: &str) -> &'a str {
    if relative && is_within(p, domain) && p.len() > domain.len() {
        &p[domain.len() + 1..]
    } else {
        p
    }
}
