//! The filesystem model behind the power-loss recorder: which names and which bytes a power cut
//! must keep, and the crash images built from it.
//!
//! Owns: one tree of nodes per recorded directory. A *file* node keeps its durable bytes (its
//! length and content as of its syncs); what the file holds
//! now (its page cache) is read from the real file when needed. A *directory* node keeps its
//! live entries, its durable entries (as of its last fsync) and the entry operations since then,
//! in order.
//!
//! The rules (strict POSIX, not one filesystem's journal ordering; Linux for msync):
//! - `fsync` of a file makes its content and size durable; an msync of a range (Linux:
//!   `fdatasync` of that range) makes those bytes and the size durable.
//! - A create, mkdir, rename or unlink is durable once its directory is fsynced. Before that a
//!   power cut keeps a prefix of the directory's operations since its last fsync (metadata is
//!   journaled in order within a directory); renames are atomic.
//! - Every other byte of a file is in doubt: each 4 KiB page that differs between the durable
//!   and the current content comes back old, new, torn per 512-byte sector, or cut at a random
//!   byte (new before, old after: a write-back caught mid-page); a size that changed since the
//!   last sync comes back old or new.
//!
//! Must not touch: the recorded directory (it only reads it); images go where the caller says.
//!
//! Concurrency: none; the recorder holds its lock around every call.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use rand::rngs::StdRng;
use rand::Rng;

use super::{Event, ImageKind};

const PAGE: usize = 4096;
const SECTOR: usize = 512;

pub(super) type NodeId = usize;

#[derive(Debug, Clone)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug, Clone, Default)]
struct FileNode {
    /// Length and bytes a power cut keeps for sure.
    durable: Vec<u8>,
    /// What the file held when its last live name went away.
    last_content: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    live: BTreeMap<OsString, NodeId>,
    durable: BTreeMap<OsString, NodeId>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(OsString, NodeId),
    Unlink(OsString),
    Rename(OsString, OsString, NodeId),
}

impl DirOp {
    fn apply(&self, entries: &mut BTreeMap<OsString, NodeId>) {
        match self {
            Self::Link(name, id) => {
                entries.insert(name.clone(), *id);
            }
            Self::Unlink(name) => {
                entries.remove(name);
            }
            Self::Rename(from, to, id) => {
                entries.remove(from);
                entries.insert(to.clone(), *id);
            }
        }
    }
}

/// What a crash image left in doubt, for the report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ImageStats {
    /// Pages whose durable and current content differed.
    pub doubtful_pages: u64,
    /// Of those, pages that came back torn or cut.
    pub torn_pages: u64,
    /// Directory operations since the last fsync that a crash could drop.
    pub doubtful_entries: u64,
    /// Of those, operations the image dropped.
    pub dropped_entries: u64,
}

/// The model of one recorded directory tree.
pub(super) struct Model {
    root: PathBuf,
    nodes: Vec<Node>,
}

const ROOT: NodeId = 0;

impl Model {
    /// Models the tree under `root` as it is now, all of it durable.
    pub(super) fn adopt(root: &Path) -> io::Result<Self> {
        let mut model = Self {
            root: root.to_path_buf(),
            nodes: vec![Node::Dir(DirNode::default())],
        };
        model.adopt_dir(ROOT, root)?;
        Ok(model)
    }

    fn adopt_dir(&mut self, id: NodeId, path: &Path) -> io::Result<()> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            entries.push((entry.file_name(), entry.path(), entry.file_type()?.is_dir()));
        }
        for (name, child_path, is_dir) in entries {
            let child = if is_dir {
                let child = self.push(Node::Dir(DirNode::default()));
                self.adopt_dir(child, &child_path)?;
                child
            } else {
                self.push(Node::File(FileNode {
                    durable: fs::read(&child_path)?,
                    last_content: None,
                }))
            };
            if let Node::Dir(d) = &mut self.nodes[id] {
                d.live.insert(name.clone(), child);
                d.durable.insert(name, child);
            }
        }
        Ok(())
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The components of `path` below the root, or an error for a path outside it.
    fn components(&self, path: &Path) -> Result<Vec<OsString>, String> {
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| format!("{} is outside {}", path.display(), self.root.display()))?;
        rel.components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n.to_os_string()),
                _ => Err(format!("unexpected path form {}", path.display())),
            })
            .collect()
    }

    fn lookup(&self, comps: &[OsString]) -> Option<NodeId> {
        let mut at = ROOT;
        for c in comps {
            match &self.nodes[at] {
                Node::Dir(d) => at = *d.live.get(c)?,
                Node::File(_) => return None,
            }
        }
        Some(at)
    }

    /// The directory node holding `path`'s entry and the entry's name.
    fn parent_of(&self, path: &Path) -> Result<(NodeId, OsString), String> {
        let mut comps = self.components(path)?;
        let name = comps
            .pop()
            .ok_or_else(|| format!("{} names the root", path.display()))?;
        match self.lookup(&comps) {
            Some(id) if matches!(self.nodes[id], Node::Dir(_)) => Ok((id, name)),
            _ => Err(format!(
                "{}: its directory is not known to the recorder (created behind its back?)",
                path.display()
            )),
        }
    }

    fn dir_mut(&mut self, id: NodeId) -> &mut DirNode {
        match &mut self.nodes[id] {
            Node::Dir(d) => d,
            Node::File(_) => unreachable!("dir_mut on a file node"),
        }
    }

    fn file_node(&self, path: &Path) -> Result<NodeId, String> {
        let id = self
            .components(path)
            .ok()
            .and_then(|c| self.lookup(&c))
            .ok_or_else(|| format!("{}: synced but not known to the recorder", path.display()))?;
        match self.nodes[id] {
            Node::File(_) => Ok(id),
            Node::Dir(_) => Err(format!("{}: a directory synced as a file", path.display())),
        }
    }

    /// Before `event` runs: keeps what files about to lose their last live name hold now.
    pub(super) fn prepare(&mut self, event: &Event<'_>) {
        let doomed = match event {
            Event::Remove(p) | Event::Rename(_, p) => vec![p.to_path_buf()],
            Event::RemoveDirAll(p) => {
                let mut out = Vec::new();
                if let Some(id) = self.components(p).ok().and_then(|c| self.lookup(&c)) {
                    self.files_under(id, p, &mut out);
                }
                out
            }
            _ => Vec::new(),
        };
        for path in doomed {
            let Some(id) = self.components(&path).ok().and_then(|c| self.lookup(&c)) else {
                continue;
            };
            if let Node::File(f) = &mut self.nodes[id] {
                f.last_content = fs::read(&path).ok();
            }
        }
    }

    fn files_under(&self, id: NodeId, path: &Path, out: &mut Vec<PathBuf>) {
        match &self.nodes[id] {
            Node::File(_) => out.push(path.to_path_buf()),
            Node::Dir(d) => {
                for (name, child) in &d.live {
                    self.files_under(*child, &path.join(name), out);
                }
            }
        }
    }

    /// After `event` succeeded: updates the model.
    pub(super) fn apply(&mut self, event: &Event<'_>) -> Result<(), String> {
        match *event {
            Event::Create(p) => {
                let (dir, name) = self.parent_of(p)?;
                if let Node::Dir(d) = &self.nodes[dir] {
                    if d.live.contains_key(&name) {
                        return Ok(()); // opened an existing file
                    }
                }
                let id = self.push(Node::File(FileNode::default()));
                let d = self.dir_mut(dir);
                d.live.insert(name.clone(), id);
                d.pending.push(DirOp::Link(name, id));
            }
            Event::Mkdir(p) => {
                let (dir, name) = self.parent_of(p)?;
                let id = self.push(Node::Dir(DirNode::default()));
                let d = self.dir_mut(dir);
                d.live.insert(name.clone(), id);
                d.pending.push(DirOp::Link(name, id));
            }
            Event::Rename(from, to) => {
                let (dir, a) = self.parent_of(from)?;
                let (dir_to, b) = self.parent_of(to)?;
                if dir != dir_to {
                    return Err(format!(
                        "rename across directories is not modelled: {} -> {}",
                        from.display(),
                        to.display()
                    ));
                }
                let d = self.dir_mut(dir);
                let id = d
                    .live
                    .remove(&a)
                    .ok_or_else(|| format!("{}: renamed but not known", from.display()))?;
                d.live.insert(b.clone(), id);
                d.pending.push(DirOp::Rename(a, b, id));
            }
            Event::Remove(p) => {
                let (dir, name) = self.parent_of(p)?;
                let d = self.dir_mut(dir);
                d.live
                    .remove(&name)
                    .ok_or_else(|| format!("{}: removed but not known", p.display()))?;
                d.pending.push(DirOp::Unlink(name));
            }
            Event::RemoveDirAll(p) => {
                let (dir, name) = self.parent_of(p)?;
                if let Some(id) = self.lookup(&self.components(p)?) {
                    self.unlink_all(id);
                }
                let d = self.dir_mut(dir);
                if d.live.remove(&name).is_some() {
                    d.pending.push(DirOp::Unlink(name));
                }
            }
            Event::SyncRange(p, pos, len) => self.sync_range(p, pos, len)?,
            Event::SyncFile(p) => {
                let id = self.file_node(p)?;
                let content = fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                if let Node::File(f) = &mut self.nodes[id] {
                    f.durable = content;
                }
            }
            Event::SyncDir(p) => {
                let id = self
                    .components(p)
                    .ok()
                    .and_then(|c| self.lookup(&c))
                    .ok_or_else(|| format!("{}: synced but not known", p.display()))?;
                if let Node::Dir(d) = &mut self.nodes[id] {
                    d.durable = d.live.clone();
                    d.pending.clear();
                }
            }
        }
        Ok(())
    }

    fn unlink_all(&mut self, id: NodeId) {
        let children: Vec<(OsString, NodeId)> = match &self.nodes[id] {
            Node::Dir(d) => d.live.iter().map(|(n, c)| (n.clone(), *c)).collect(),
            Node::File(_) => return,
        };
        for (name, child) in children {
            self.unlink_all(child);
            let d = self.dir_mut(id);
            d.live.remove(&name);
            d.pending.push(DirOp::Unlink(name));
        }
    }

    /// An msync of `[pos, pos + len)`: those bytes and the file's size become durable.
    fn sync_range(&mut self, path: &Path, pos: u64, len: u64) -> Result<(), String> {
        let id = self.file_node(path)?;
        let err = |e: io::Error| format!("{}: {e}", path.display());
        let file = fs::File::open(path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let end = (pos + len).min(size);
        let mut bytes = vec![0u8; end.saturating_sub(pos) as usize];
        file.read_exact_at(&mut bytes, pos).map_err(err)?;
        let Node::File(f) = &mut self.nodes[id] else {
            return Ok(());
        };
        f.durable.resize(size as usize, 0);
        if let Some(dst) = f.durable.get_mut(pos as usize..end as usize) {
            dst.copy_from_slice(&bytes);
        }
        Ok(())
    }

    /// Where each live node is now.
    fn live_paths(&self) -> BTreeMap<NodeId, PathBuf> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(ROOT, self.root.clone())];
        while let Some((id, path)) = stack.pop() {
            if let Node::Dir(d) = &self.nodes[id] {
                for (name, child) in &d.live {
                    stack.push((*child, path.join(name)));
                }
            }
            out.insert(id, path);
        }
        out
    }

    /// Differences between the live model and the real tree: a file or directory the store
    /// created, renamed or removed without going through `disk` (or the recorder missed).
    pub(super) fn mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.compare(ROOT, &self.root, &mut out);
        out
    }

    fn compare(&self, id: NodeId, path: &Path, out: &mut Vec<String>) {
        let Node::Dir(d) = &self.nodes[id] else {
            return;
        };
        let mut real = BTreeMap::new();
        match fs::read_dir(path) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                    real.insert(e.file_name(), is_dir);
                }
            }
            Err(e) => out.push(format!("{}: {e}", path.display())),
        }
        for (name, is_dir) in &real {
            match d.live.get(name) {
                None => out.push(format!("unrecorded: {}", path.join(name).display())),
                Some(child) => {
                    let modelled_dir = matches!(self.nodes[*child], Node::Dir(_));
                    if modelled_dir != *is_dir {
                        out.push(format!("kind differs: {}", path.join(name).display()));
                    } else if *is_dir {
                        self.compare(*child, &path.join(name), out);
                    }
                }
            }
        }
        for name in d.live.keys().filter(|n| !real.contains_key(*n)) {
            out.push(format!(
                "gone without a record: {}",
                path.join(name).display()
            ));
        }
    }

    /// The durable content of each live file in directory `rel` (relative to the root).
    pub(super) fn durable_in(&self, rel: &str) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let comps: Vec<OsString> = Path::new(rel)
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        if let Some(Node::Dir(d)) = self.lookup(&comps).map(|id| &self.nodes[id]) {
            for (name, child) in &d.live {
                if let Node::File(f) = &self.nodes[*child] {
                    out.insert(name.to_string_lossy().into_owned(), f.durable.clone());
                }
            }
        }
        out
    }

    /// Writes into `out` (an empty, existing directory) what a power cut now could leave of the
    /// recorded tree, with every doubtful choice made as `kind` says (drawn from `rng` for
    /// [`ImageKind::Random`]).
    pub(super) fn materialize(
        &self,
        out: &Path,
        rng: &mut StdRng,
        kind: ImageKind,
    ) -> io::Result<ImageStats> {
        let live = self.live_paths();
        let mut image = Image {
            live,
            rng,
            kind,
            stats: ImageStats::default(),
        };
        self.write_dir(ROOT, out, &mut image)?;
        Ok(image.stats)
    }

    fn write_dir(&self, id: NodeId, out: &Path, image: &mut Image<'_>) -> io::Result<()> {
        let Node::Dir(d) = &self.nodes[id] else {
            return Ok(());
        };
        let mut entries = d.durable.clone();
        let kept = match image.kind {
            ImageKind::Random => image.rng.gen_range(0..=d.pending.len()),
            ImageKind::Pessimistic => 0,
            ImageKind::MetadataOnly => d.pending.len(),
        };
        image.stats.doubtful_entries += d.pending.len() as u64;
        image.stats.dropped_entries += (d.pending.len() - kept) as u64;
        for op in &d.pending[..kept] {
            op.apply(&mut entries);
        }
        for (name, child) in entries {
            let path = out.join(&name);
            match &self.nodes[child] {
                Node::Dir(_) => {
                    fs::create_dir(&path)?;
                    self.write_dir(child, &path, image)?;
                }
                Node::File(f) => {
                    let current = match image.live.get(&child) {
                        Some(p) => fs::read(p)?,
                        None => f.last_content.clone().unwrap_or_else(|| f.durable.clone()),
                    };
                    let content = match image.kind {
                        ImageKind::Random => {
                            file_image(&f.durable, &current, image.rng, &mut image.stats)
                        }
                        ImageKind::Pessimistic => f.durable.clone(),
                        ImageKind::MetadataOnly => {
                            let mut bytes = f.durable.clone();
                            bytes.resize(current.len(), 0);
                            bytes
                        }
                    };
                    fs::write(&path, content)?;
                }
            }
        }
        Ok(())
    }
}

/// The state of one image being written.
struct Image<'a> {
    live: BTreeMap<NodeId, PathBuf>,
    rng: &'a mut StdRng,
    kind: ImageKind,
    stats: ImageStats,
}

/// One file as a power cut could leave it: `durable` where nothing changed since the last sync,
/// otherwise a random choice per page (see the module doc).
fn file_image(durable: &[u8], current: &[u8], rng: &mut StdRng, stats: &mut ImageStats) -> Vec<u8> {
    let len = if durable.len() == current.len() || rng.gen_bool(0.5) {
        current.len()
    } else {
        durable.len()
    };
    let (mut old, mut new) = (durable.to_vec(), current.to_vec());
    old.resize(len, 0);
    new.resize(len, 0);
    let mut out = Vec::with_capacity(len);
    for at in (0..len).step_by(PAGE) {
        let end = (at + PAGE).min(len);
        let (o, n) = (&old[at..end], &new[at..end]);
        if o == n {
            out.extend_from_slice(n);
            continue;
        }
        stats.doubtful_pages += 1;
        match rng.gen_range(0..4) {
            0 => out.extend_from_slice(o),
            1 => out.extend_from_slice(n),
            2 => {
                stats.torn_pages += 1;
                for s in (0..end - at).step_by(SECTOR) {
                    let e = (s + SECTOR).min(end - at);
                    out.extend_from_slice(if rng.gen_bool(0.5) {
                        &n[s..e]
                    } else {
                        &o[s..e]
                    });
                }
            }
            _ => {
                stats.torn_pages += 1;
                let cut = rng.gen_range(0..=end - at);
                out.extend_from_slice(&n[..cut]);
                out.extend_from_slice(&o[cut..]);
            }
        }
    }
    out
}
