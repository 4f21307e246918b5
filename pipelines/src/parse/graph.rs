//! Checks across stages: `needs:` names that exist, no cycles (reported with the path
//! through them), duplicate names, and service names that shadow stages. Tarjan's algorithm
//! without recursion, as a file can hold thousands of stages.

use super::*;

impl Checker<'_> {
    /// Duplicate names, `needs` that do not resolve, dependency cycles (explicit and implicit
    /// edges together) and service names that shadow stages.
    pub(super) fn cross_stage(&mut self, infos: &[StageInfo]) {
        let mut first: HashMap<&str, (usize, Pos)> = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            if let Some((name, pos)) = &info.name {
                match first.get(name.as_str()) {
                    Some((_, at)) => self.err(
                        *pos,
                        format!(
                            "duplicate stage name \"{name}\" (first defined at line {})",
                            at.line
                        ),
                    ),
                    None => {
                        first.insert(name, (i, *pos));
                    }
                }
            }
        }
        let label = |info: &StageInfo, i: usize| match &info.name {
            Some((n, _)) => format!("stage \"{n}\""),
            None => format!("stage {}", i + 1),
        };

        // deps[i]: the stages i waits for; `implicit[i]` when that is the previous stage only
        // because `needs` is absent.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); infos.len()];
        let mut implicit = vec![false; infos.len()];
        // Candidates for hints, in file order so that ties resolve the same way every time.
        let defined: Vec<&str> = infos
            .iter()
            .filter_map(|info| info.name.as_ref().map(|(n, _)| n.as_str()))
            .collect();
        for (i, info) in infos.iter().enumerate() {
            let Some((_, needs)) = &info.needs else {
                if i > 0 {
                    deps[i].push(i - 1);
                    implicit[i] = true;
                }
                continue;
            };
            let own = info.name.as_ref().map(|(n, _)| n.as_str());
            let mut listed = HashSet::new();
            for (n, pos) in needs {
                if Some(n.as_str()) == own {
                    self.err(*pos, format!("{} needs itself", label(info, i)));
                    continue;
                }
                match first.get(n.as_str()) {
                    Some((j, _)) if !listed.insert(*j) => self.err(
                        *pos,
                        format!("{} lists \"{n}\" twice in needs", label(info, i)),
                    ),
                    Some((j, _)) => deps[i].push(*j),
                    None => {
                        let h = self.hint(n, &defined, own);
                        self.err(
                            *pos,
                            format!("{} needs \"{n}\", which is not defined{h}", label(info, i)),
                        );
                    }
                }
            }
        }

        let name_of = |i: usize| match &infos[i].name {
            Some((n, _)) => n.clone(),
            None => format!("stage {}", i + 1),
        };
        let mut cycles: Vec<Vec<usize>> = strongly_connected(&deps)
            .into_iter()
            .filter(|c| c.len() > 1)
            .filter_map(|c| cycle_through(&deps, &c))
            .collect();
        cycles.sort();
        for cycle in cycles {
            let start = cycle[0];
            // A cycle through thousands of stages is shown by its ends.
            let path: Vec<String> = if cycle.len() > MAX_LISTED + 2 {
                let head = cycle[..MAX_LISTED].iter().map(|&i| name_of(i));
                let tail = cycle[cycle.len() - 2..].iter().map(|&i| name_of(i));
                head.chain([format!("... ({} stages)", cycle.len() - 1)])
                    .chain(tail)
                    .collect()
            } else {
                cycle.iter().map(|&i| name_of(i)).collect()
            };
            let mut msg = format!("dependency cycle: {}", path.join(" -> "));
            let implicit_edges: Vec<&[usize]> =
                cycle.windows(2).filter(|w| implicit[w[0]]).collect();
            let mut notes: Vec<String> = implicit_edges
                .iter()
                .take(3)
                .map(|w| {
                    format!(
                        "\"{}\" has no needs, so it waits for the stage before it, \"{}\"",
                        name_of(w[0]),
                        name_of(w[1])
                    )
                })
                .collect();
            if implicit_edges.len() > 3 {
                notes.push(format!(
                    "and {} more implicit dependencies",
                    implicit_edges.len() - 3
                ));
            }
            if !notes.is_empty() {
                msg.push_str(&format!(" ({})", notes.join("; ")));
            }
            let pos = infos[start]
                .needs
                .as_ref()
                .map_or(infos[start].pos, |(p, _)| *p);
            self.err(pos, msg);
        }

        for (i, info) in infos.iter().enumerate() {
            for (svc, pos) in &info.services {
                if first.contains_key(svc.as_str()) {
                    self.err(
                        *pos,
                        format!(
                            "service \"{svc}\" of {} has the same name as a stage",
                            label(info, i)
                        ),
                    );
                }
            }
        }
    }
}

/// Tarjan's algorithm without recursion: a file can hold thousands of stages.
pub(super) fn strongly_connected(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, child)) = work.last() {
            if child < deps[v].len() {
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                let w = deps[v][child];
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
    }
    out
}

/// A shortest cycle inside a strongly connected component, starting and ending at its
/// first stage in file order.
pub(super) fn cycle_through(deps: &[Vec<usize>], component: &[usize]) -> Option<Vec<usize>> {
    let start = *component.iter().min()?;
    let mut inside = vec![false; deps.len()];
    for &i in component {
        inside[i] = true;
    }
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for &w in &deps[u] {
            if w == start {
                let mut path = vec![start];
                let mut at = u;
                while at != start {
                    path.push(at);
                    at = parent[&at];
                }
                path[1..].reverse();
                path.push(start);
                return Some(path);
            }
            if inside[w] && !parent.contains_key(&w) {
                parent.insert(w, u);
                queue.push_back(w);
            }
        }
    }
    None
}
