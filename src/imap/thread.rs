//! THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES, and the THREAD response.
//! Sans-IO: the session reads the messages' header fields and hands them here.

use super::sort::{base_subject_and_reply, fold};
use std::collections::HashMap;

/// A threading algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Threads are messages with the same base subject.
    OrderedSubject,
    /// Threads follow References / In-Reply-To, then base subjects.
    References,
}

impl Algorithm {
    /// The algorithm named by a THREAD command's atom (any case).
    pub fn from_atom(atom: &[u8]) -> Option<Algorithm> {
        if atom.eq_ignore_ascii_case(b"ORDEREDSUBJECT") {
            Some(Algorithm::OrderedSubject)
        } else if atom.eq_ignore_ascii_case(b"REFERENCES") {
            Some(Algorithm::References)
        } else {
            None
        }
    }
}

/// One message to thread.
#[derive(Debug, Clone, Default)]
pub struct ThreadMsg {
    /// Sequence number (orders equal dates).
    pub seq: u32,
    /// What the response shows: the sequence number or the UID.
    pub id: u32,
    /// Sent date (RFC 5256 §2.2: Date:, else INTERNALDATE), seconds in UTC.
    pub date: i64,
    /// Decoded Subject:.
    pub subject: String,
    /// Message-ID without brackets.
    pub message_id: Option<String>,
    /// References (or the In-Reply-To id), oldest first.
    pub references: Vec<String>,
}

/// A node of a thread tree: a message, or a dummy standing for a missing parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The message's id, `None` for a dummy.
    pub id: Option<u32>,
    /// Replies, oldest first.
    pub children: Vec<Node>,
}

/// Threads `msgs` (given in mailbox order) with `algorithm`.
pub fn thread(algorithm: Algorithm, msgs: &[ThreadMsg]) -> Vec<Node> {
    match algorithm {
        Algorithm::OrderedSubject => ordered_subject(msgs),
        Algorithm::References => references(msgs),
    }
}

/// Writes the threads as a THREAD response's data: `(1 2)(3 (4)(5))`.
pub fn write(out: &mut Vec<u8>, threads: &[Node]) {
    for t in threads {
        out.push(b'(');
        write_members(out, t);
        out.push(b')');
    }
}

fn write_members(out: &mut Vec<u8>, node: &Node) {
    if let Some(id) = node.id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
    match node.children.as_slice() {
        [] => {}
        [only] => {
            if node.id.is_some() {
                out.push(b' ');
            }
            write_members(out, only);
        }
        many => {
            if node.id.is_some() {
                out.push(b' ');
            }
            for c in many {
                out.push(b'(');
                write_members(out, c);
                out.push(b')');
            }
        }
    }
}

/// Sort key of a message: sent date, then mailbox order.
fn key(m: &ThreadMsg) -> (i64, u32) {
    (m.date, m.seq)
}

fn ordered_subject(msgs: &[ThreadMsg]) -> Vec<Node> {
    let mut sorted: Vec<(String, &ThreadMsg)> = msgs
        .iter()
        .map(|m| (fold(&base_subject_and_reply(&m.subject).0), m))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(key(a.1).cmp(&key(b.1))));
    let mut threads: Vec<((i64, u32), Node)> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let j = i + sorted[i..]
            .iter()
            .take_while(|s| s.0 == sorted[i].0)
            .count();
        let first = sorted[i].1;
        let children = sorted[i + 1..j]
            .iter()
            .map(|(_, m)| Node {
                id: Some(m.id),
                children: Vec::new(),
            })
            .collect();
        threads.push((
            key(first),
            Node {
                id: Some(first.id),
                children,
            },
        ));
        i = j;
    }
    threads.sort_by_key(|t| t.0);
    threads.into_iter().map(|t| t.1).collect()
}

/// Reply chains deeper than this are cut there, the rest starting threads of their own, so no
/// walk of the tree (all recursive) can exhaust the stack on a mailbox made to do that.
const MAX_DEPTH: usize = 500;

/// A container of the REFERENCES algorithm: a message (or none: a dummy) and its links.
#[derive(Debug, Default, Clone)]
struct Container {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Tree<'m> {
    msgs: &'m [ThreadMsg],
    c: Vec<Container>,
}

impl Tree<'_> {
    fn add(&mut self) -> usize {
        self.c.push(Container::default());
        self.c.len() - 1
    }

    /// Whether `child` may go under `parent`: no loop (`child` is not `parent` or one of its
    /// ancestors), and `parent` is less than [`MAX_DEPTH`] deep, which also bounds this walk.
    fn can_link(&self, parent: usize, child: usize) -> bool {
        let mut at = Some(parent);
        let mut depth = 0;
        while let Some(x) = at {
            if x == child || depth >= MAX_DEPTH {
                return false;
            }
            depth += 1;
            at = self.c[x].parent;
        }
        true
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }

    /// Sort key of a container: its message's, or for a dummy its first child's.
    fn key(&self, x: usize) -> (i64, u32) {
        match self.c[x].msg {
            Some(m) => key(&self.msgs[m]),
            None => self.c[x]
                .children
                .first()
                .map_or((i64::MAX, u32::MAX), |&f| self.key(f)),
        }
    }

    /// The base subject of a thread and whether its top message is a reply or forward.
    fn subject(&self, x: usize) -> (String, bool) {
        let top = match self.c[x].msg {
            Some(m) => Some(m),
            None => self.c[x].children.first().and_then(|&f| self.c[f].msg),
        };
        top.map_or((String::new(), false), |m| {
            let (s, reply) = base_subject_and_reply(&self.msgs[m].subject);
            (fold(&s), reply)
        })
    }

    /// Cuts every chain at [`MAX_DEPTH`]: what lies deeper becomes a root.
    fn cut_deep(&mut self) {
        let mut stack: Vec<(usize, usize)> = (0..self.c.len())
            .filter(|&x| self.c[x].parent.is_none())
            .map(|x| (x, 0))
            .collect();
        while let Some((x, depth)) = stack.pop() {
            if depth >= MAX_DEPTH {
                self.unlink(x);
                stack.push((x, 0));
                continue;
            }
            stack.extend(self.c[x].children.iter().map(|&k| (k, depth + 1)));
        }
    }

    /// Step 4: drops childless dummies and splices the children of the others into their
    /// place (at the root only when there is one child).
    fn prune(&mut self, ids: Vec<usize>, parent: Option<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        for x in ids {
            let kids = std::mem::take(&mut self.c[x].children);
            let kids = self.prune(kids, Some(x));
            self.c[x].children = kids;
            if self.c[x].msg.is_some() {
                out.push(x);
            } else if self.c[x].children.is_empty() {
                // Dropped.
            } else if parent.is_some() || self.c[x].children.len() == 1 {
                let kids = std::mem::take(&mut self.c[x].children);
                for &k in &kids {
                    self.c[k].parent = parent;
                }
                out.extend(kids);
            } else {
                out.push(x);
            }
        }
        out
    }

    /// Step 7: siblings by sent date, the deepest first.
    fn sort_children(&mut self, x: usize) {
        let kids = std::mem::take(&mut self.c[x].children);
        for &k in &kids {
            self.sort_children(k);
        }
        let mut kids = kids;
        kids.sort_by_key(|&k| self.key(k));
        self.c[x].children = kids;
    }

    fn node(&self, x: usize) -> Node {
        Node {
            id: self.c[x].msg.map(|m| self.msgs[m].id),
            children: self.c[x].children.iter().map(|&k| self.node(k)).collect(),
        }
    }
}

fn references(msgs: &[ThreadMsg]) -> Vec<Node> {
    let mut t = Tree {
        msgs,
        c: Vec::new(),
    };
    // Step 1: containers by message id, linked along every References chain.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut prev: Option<usize> = None;
        for r in &m.references {
            let x = match by_id.get(r.as_str()) {
                Some(&x) => x,
                None => {
                    let x = t.add();
                    by_id.insert(r, x);
                    x
                }
            };
            if let Some(p) = prev {
                // An existing link stays; a link that would make a loop is not made.
                if t.c[x].parent.is_none() && t.can_link(p, x) {
                    t.link(p, x);
                }
            }
            prev = Some(x);
        }
        // A message without an id, or with one another message has, gets a container of its
        // own.
        let own = match m.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&x) if t.c[x].msg.is_none() => x,
                Some(_) => t.add(),
                None => {
                    let x = t.add();
                    by_id.insert(id, x);
                    x
                }
            },
            None => t.add(),
        };
        t.c[own].msg = Some(i);
        // The message's own References are the best word on its parent.
        t.unlink(own);
        if let Some(p) = prev {
            if t.can_link(p, own) {
                t.link(p, own);
            }
        }
    }
    t.cut_deep();
    // Step 2: the root set.
    let roots: Vec<usize> = (0..t.c.len())
        .filter(|&x| t.c[x].parent.is_none())
        .collect();
    // Step 4.
    let mut roots = t.prune(roots, None);
    // Step 5: the root set by sent date (a dummy by its first child's, children sorted first).
    for &r in &roots {
        t.sort_children(r);
    }
    roots.sort_by_key(|&r| t.key(r));
    // Step 6: threads with the same base subject are merged.
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let (subject, reply) = t.subject(r);
        if subject.is_empty() {
            continue;
        }
        match table.get(&subject) {
            None => {
                table.insert(subject, r);
            }
            Some(&old) => {
                let old_reply = t.subject(old).1;
                if t.c[old].msg.is_some() && (t.c[r].msg.is_none() || (old_reply && !reply)) {
                    table.insert(subject, r);
                }
            }
        }
    }
    let mut merged: Vec<usize> = Vec::new();
    let mut gone = vec![false; t.c.len()];
    for i in 0..roots.len() {
        let r = roots[i];
        if gone[r] {
            continue;
        }
        let (subject, reply) = t.subject(r);
        let Some(&held) = table.get(&subject).filter(|_| !subject.is_empty()) else {
            merged.push(r);
            continue;
        };
        if held == r {
            merged.push(r);
            continue;
        }
        let held_dummy = t.c[held].msg.is_none();
        let held_reply = t.subject(held).1;
        if held_dummy && t.c[r].msg.is_none() {
            for k in std::mem::take(&mut t.c[r].children) {
                t.link(held, k);
            }
            gone[r] = true;
        } else if held_dummy || (reply && !held_reply) {
            t.link(held, r);
            gone[r] = true;
        } else {
            // A new dummy takes the held thread's place in the root set and the table.
            let d = t.add();
            gone.push(false);
            t.link(d, held);
            t.link(d, r);
            gone[r] = true;
            table.insert(subject, d);
            if let Some(pos) = merged.iter().position(|&x| x == held) {
                merged[pos] = d;
            } else if let Some(pos) = roots[i + 1..].iter().position(|&x| x == held) {
                // Not reached yet: it will be seen as the dummy.
                roots[i + 1 + pos] = d;
            }
        }
    }
    // Merging may have passed over a held root that became a dummy's child meanwhile.
    merged.retain(|&x| t.c[x].parent.is_none());
    // Step 7.
    for &r in &merged {
        t.sort_children(r);
    }
    merged.iter().map(|&r| t.node(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u32, date: i64, subject: &str, id: Option<&str>, refs: &[&str]) -> ThreadMsg {
        ThreadMsg {
            seq,
            id: seq,
            date,
            subject: subject.into(),
            message_id: id.map(str::to_owned),
            references: refs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn render(t: &[Node]) -> String {
        let mut out = Vec::new();
        write(&mut out, t);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ordered_subject_groups_by_base_subject_then_date() {
        let msgs = [
            m(1, 30, "b", None, &[]),
            m(2, 10, "Re: a", None, &[]),
            m(3, 20, "a", None, &[]),
            m(4, 40, "re: b", None, &[]),
            m(5, 5, "Fwd: a", None, &[]),
            m(6, 50, "c", None, &[]),
        ];
        assert_eq!(
            render(&thread(Algorithm::OrderedSubject, &msgs)),
            "(5 (2)(3))(1 4)(6)"
        );
    }

    #[test]
    fn references_follow_chains_dummies_and_subjects() {
        let msgs = [
            m(1, 10, "topic", Some("a@x"), &[]),
            m(2, 20, "Re: topic", Some("b@x"), &["a@x"]),
            m(3, 30, "Re: topic", Some("c@x"), &["a@x", "b@x"]),
            m(4, 25, "Re: other", Some("d@x"), &["missing@x"]),
            m(5, 26, "Re: other", Some("e@x"), &["missing@x"]),
            m(6, 5, "Re: lone", None, &[]),
            m(7, 40, "lone", Some("g@x"), &[]),
        ];
        assert_eq!(
            render(&thread(Algorithm::References, &msgs)),
            "(1 2 3)((4)(5))(7 6)"
        );
    }

    #[test]
    fn a_very_long_reply_chain_is_cut_not_a_stack_overflow() {
        let n = 100_000u32;
        let msgs: Vec<ThreadMsg> = (1..=n)
            .map(|i| ThreadMsg {
                seq: i,
                id: i,
                date: i64::from(i),
                subject: format!("s{i}"),
                message_id: Some(format!("{i}@x")),
                references: if i > 1 {
                    vec![format!("{}@x", i - 1)]
                } else {
                    vec![]
                },
            })
            .collect();
        let t = thread(Algorithm::References, &msgs);
        assert!(
            t.len() >= (n as usize).div_ceil(MAX_DEPTH),
            "{} threads",
            t.len()
        );
        let mut deepest = 0;
        let mut stack: Vec<(&Node, usize)> = t.iter().map(|n| (n, 1)).collect();
        while let Some((node, d)) = stack.pop() {
            deepest = deepest.max(d);
            stack.extend(node.children.iter().map(|c| (c, d + 1)));
        }
        assert!(deepest <= MAX_DEPTH + 2, "a thread {deepest} deep");
        let out = render(&t);
        assert_eq!(
            out.split(' ').count() + t.len() - 1,
            n as usize,
            "every message once"
        );
    }

    #[test]
    fn reference_loops_and_duplicate_ids_are_harmless() {
        let msgs = [
            m(1, 10, "x", Some("a@x"), &["b@x"]),
            m(2, 20, "y", Some("b@x"), &["a@x"]),
            m(3, 30, "z", Some("a@x"), &[]),
        ];
        let t = thread(Algorithm::References, &msgs);
        let mut seen = Vec::new();
        fn collect(n: &Node, seen: &mut Vec<u32>) {
            seen.extend(n.id);
            n.children.iter().for_each(|c| collect(c, seen));
        }
        t.iter().for_each(|n| collect(n, &mut seen));
        seen.sort_unstable();
        assert_eq!(
            seen,
            [1, 2, 3],
            "every message exactly once: {}",
            render(&t)
        );
    }
}
