//! Relationship inference: foreign keys give many-to-one / one-to-many / one-to-one
//! relationships, junction tables give many-to-many ones, and views take part through the
//! base-table columns they expose (traced from their query trees in pg_rewrite, through
//! chains of views).

use std::collections::{HashMap, HashSet};

use tokio_postgres::Transaction;

use super::{for_each_row, Cardinality, Junction, Relationship, Table};

type Tables = HashMap<String, HashMap<String, Table>>;

/// Every relation outside the system schemas: keys and views may live in schemas that are
/// not exposed (a private junction table behind an exposed view, say).
const RELATIONS_SQL: &str = r#"
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"#;

/// Primary keys, unique constraints and foreign keys, in creation order; the copies a
/// partitioned table's keys leave on its partitions are skipped.
const KEYS_SQL: &str = r#"
SELECT c.conrelid, c.contype::text, c.conname::text, c.conkey, c.confrelid,
       coalesce(c.confkey, '{}')
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
JOIN pg_class cl ON cl.oid = c.conrelid
WHERE c.contype IN ('p', 'u', 'f') AND NOT cl.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY c.oid
"#;

const VIEWS_SQL: &str = r#"
SELECT r.ev_class, r.ev_action::text
FROM pg_rewrite r
JOIN pg_class c ON c.oid = r.ev_class
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename = '_RETURN' AND c.relkind IN ('v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"#;

type Oid = u32;
type AttNum = i16;

struct Rel {
    schema: String,
    name: String,
    is_view: bool,
    exposed: bool,
}

/// A foreign key, or a foreign key seen through views at either end.
struct Edge {
    constraint: String,
    source: Oid,
    source_cols: Vec<AttNum>,
    target: Oid,
    target_cols: Vec<AttNum>,
}

/// The top-level target list of a view's query tree, as printed by nodeToString:
/// (resno, resorigtbl, resorigcol) per output column. Written by hand because no crate
/// reads PostgreSQL's node text format; it only needs nesting and three fields.
pub(crate) fn view_targets(tree: &str) -> Vec<(AttNum, Oid, AttNum)> {
    let bytes = tree.as_bytes();
    let mut scan = TargetListScan::default();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'(' | b'{' => scan.open(bytes[i]),
            b')' | b'}' if scan.close(bytes[i]) => return scan.out,
            b':' => {
                i = scan.field(tree, i);
                continue;
            }
            b'<' if scan.expecting_list => return scan.out,
            _ => {}
        }
        i += 1;
    }
    scan.out
}

/// Where `view_targets` is in the node text: the nesting depth, the depth of the
/// top-level target list once found, and the target entry being read.
#[derive(Default)]
struct TargetListScan {
    depth: i32,
    list_depth: Option<i32>,
    /// `:targetList` was just read; an empty list prints as `<>`.
    expecting_list: bool,
    current: Option<(AttNum, Oid, AttNum)>,
    out: Vec<(AttNum, Oid, AttNum)>,
}

impl TargetListScan {
    /// An opening `(` or `{`: the target list itself, or one of its entries.
    fn open(&mut self, bracket: u8) {
        self.depth += 1;
        if bracket == b'(' && self.expecting_list {
            self.expecting_list = false;
            self.list_depth = Some(self.depth);
        } else if bracket == b'{' && self.list_depth == Some(self.depth - 1) {
            self.current = Some((0, 0, 0));
        }
    }

    /// A closing `)` or `}`: ends an entry, or the target list (then true: done).
    fn close(&mut self, bracket: u8) -> bool {
        if bracket == b'}' && self.list_depth == Some(self.depth - 1) {
            self.out.extend(self.current.take());
        }
        if bracket == b')' && self.list_depth == Some(self.depth) {
            return true;
        }
        self.depth -= 1;
        false
    }

    /// The `:name` at `start` and, inside a top-level entry, the number after it.
    /// Returns where the name ends.
    fn field(&mut self, tree: &str, start: usize) -> usize {
        let bytes = tree.as_bytes();
        let mut end = start;
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        let word = &tree[start..end];
        if self.depth == 2 && word == ":targetList" && self.list_depth.is_none() {
            self.expecting_list = true;
            return end;
        }
        let in_entry = self.list_depth == Some(self.depth - 1);
        if let Some(entry) = self.current.as_mut().filter(|_| in_entry) {
            let rest = tree[end..].trim_start();
            let number: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            match word {
                ":resno" => entry.0 = number.parse().unwrap_or(0),
                ":resorigtbl" => entry.1 = number.parse().unwrap_or(0),
                ":resorigcol" => entry.2 = number.parse().unwrap_or(0),
                _ => {}
            }
        }
        end
    }
}

struct Catalog<'a> {
    rels: HashMap<Oid, Rel>,
    /// The exposed relations' columns, which name every column a relationship uses: both
    /// ends of one are exposed. (Reading all of pg_attribute's names instead took 0.63 s
    /// and 500,000 strings at 50,000 tables.)
    tables: &'a Tables,
    /// Unique column sets (primary keys first) per relation, views included.
    unique: HashMap<Oid, Vec<Vec<AttNum>>>,
    primary: HashMap<Oid, Vec<Vec<AttNum>>>,
    /// For each base column, the view columns that show it.
    exposures: HashMap<(Oid, AttNum), Vec<(Oid, AttNum)>>,
}

impl Catalog<'_> {
    /// `(oid, cols)` and every way a view shows all of `cols` (several when a view shows
    /// a base column more than once).
    fn projections(&self, oid: Oid, cols: &[AttNum]) -> Vec<(Oid, Vec<AttNum>)> {
        let mut out = vec![(oid, cols.to_vec())];
        let mut per_view: HashMap<Oid, Vec<Vec<AttNum>>> = HashMap::new();
        for (i, col) in cols.iter().enumerate() {
            for (view, vcol) in self.exposures.get(&(oid, *col)).into_iter().flatten() {
                let options = per_view
                    .entry(*view)
                    .or_insert_with(|| vec![Vec::new(); cols.len()]);
                options[i].push(*vcol);
            }
        }
        let mut views: Vec<_> = per_view.into_iter().collect();
        views.sort_by_key(|(v, _)| *v);
        for (view, options) in views {
            let mut combos: Vec<Vec<AttNum>> = vec![Vec::new()];
            for opts in &options {
                combos = combos
                    .iter()
                    .flat_map(|c| {
                        opts.iter().map(move |o| {
                            let mut c = c.clone();
                            c.push(*o);
                            c
                        })
                    })
                    .collect();
            }
            out.extend(
                combos
                    .into_iter()
                    .filter(|c| c.len() == cols.len())
                    .map(|c| (view, c)),
            );
        }
        out
    }

    /// Records primary keys and unique constraints on their relations and on every view
    /// that shows all of their columns.
    fn add_keys(&mut self, keys: Vec<Key>) {
        for (oid, primary, cols) in keys {
            for (rel, pcols) in self.projections(oid, &cols) {
                if primary {
                    self.primary.entry(rel).or_default().push(pcols.clone());
                }
                self.unique.entry(rel).or_default().push(pcols);
            }
        }
    }

    /// Both relations, when both are exposed and in the same schema.
    fn exposed_pair(&self, a: Oid, b: Oid) -> Option<(&Rel, &Rel)> {
        let (ra, rb) = (self.rels.get(&a)?, self.rels.get(&b)?);
        (ra.exposed && rb.exposed && ra.schema == rb.schema).then_some((ra, rb))
    }

    fn col_names(&self, oid: Oid, cols: &[AttNum]) -> Vec<String> {
        let rel = self.rels.get(&oid);
        let table = rel.and_then(|r| self.tables.get(&r.schema)?.get(&r.name));
        let name = |attnum: &AttNum| {
            let column = table?.columns.iter().find(|c| c.attnum == *attnum)?;
            Some(column.name.clone())
        };
        cols.iter().map(|c| name(c).unwrap_or_default()).collect()
    }

    fn is_unique(&self, oid: Oid, cols: &[AttNum]) -> bool {
        let set: HashSet<_> = cols.iter().collect();
        self.unique
            .get(&oid)
            .is_some_and(|keys| keys.iter().any(|k| k.iter().collect::<HashSet<_>>() == set))
    }

    fn primary_covers(&self, oid: Oid, cols: impl Iterator<Item = AttNum> + Clone) -> bool {
        self.primary
            .get(&oid)
            .is_some_and(|keys| keys.iter().any(|k| cols.clone().all(|c| k.contains(&c))))
    }
}

fn follow_view(views: &ViewColumns, view: Oid, col: AttNum) -> Option<(Oid, AttNum)> {
    let mut at = *views.get(&view)?.get(&col)?;
    for _ in 0..32 {
        match views.get(&at.0).and_then(|v| v.get(&at.1)) {
            Some(next) => at = *next,
            None => return Some(at),
        }
    }
    None
}

/// Relationships by source relation, and the primary keys views inherit from their base
/// tables (when a view shows every column of one), by (schema, view).
pub(super) struct Inferred {
    pub relationships: HashMap<(String, String), Vec<Relationship>>,
    pub view_keys: HashMap<(String, String), Vec<String>>,
}

/// What inference reads from the catalogs, fetched while the columns load.
pub(super) struct Fetched {
    rels: HashMap<Oid, Rel>,
    views: ViewColumns,
    fks: Vec<Edge>,
    keys: Vec<Key>,
}

pub(super) async fn fetch(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<Fetched, tokio_postgres::Error> {
    // The three catalog reads go out together (tokio-postgres pipelines queries on one
    // connection), so their round trips overlap.
    let (rels, views, (fks, keys)) = tokio::try_join!(
        load_relations(tx, schemas),
        load_view_columns(tx),
        load_keys(tx),
    )?;
    Ok(Fetched {
        rels,
        views,
        fks,
        keys,
    })
}

/// The relationships among the exposed relations, whose columns `tables` holds.
pub(super) fn infer_all(fetched: Fetched, tables: &Tables) -> Inferred {
    let mut catalog = Catalog {
        rels: fetched.rels,
        tables,
        unique: HashMap::new(),
        primary: HashMap::new(),
        exposures: base_column_exposures(&fetched.views),
    };
    catalog.add_keys(fetched.keys);
    let edges = edges_through_views(&catalog, &fetched.fks);
    Inferred {
        relationships: infer(&catalog, &edges),
        view_keys: view_primary_keys(&catalog),
    }
}

async fn load_relations(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<HashMap<Oid, Rel>, tokio_postgres::Error> {
    let mut rels = HashMap::new();
    for_each_row(tx, RELATIONS_SQL, &[], |r| {
        let schema: String = r.get(1);
        let kind: String = r.get(3);
        rels.insert(
            r.get::<_, Oid>(0),
            Rel {
                exposed: schemas.contains(&schema),
                schema,
                name: r.get(2),
                is_view: kind == "v" || kind == "m",
            },
        );
    })
    .await?;
    Ok(rels)
}

/// For each view, the relation column each of its columns shows directly (a base
/// table's, or another view's).
type ViewColumns = HashMap<Oid, HashMap<AttNum, (Oid, AttNum)>>;

async fn load_view_columns(tx: &Transaction<'_>) -> Result<ViewColumns, tokio_postgres::Error> {
    let mut views: ViewColumns = HashMap::new();
    for_each_row(tx, VIEWS_SQL, &[], |r| {
        let view: Oid = r.get(0);
        let tree: String = r.get(1);
        let cols = views.entry(view).or_default();
        for (resno, table, col) in view_targets(&tree) {
            if table != 0 && col > 0 {
                cols.insert(resno, (table, col));
            }
        }
    })
    .await?;
    Ok(views)
}

/// For each base column, the view columns that show it, through chains of views.
fn base_column_exposures(views: &ViewColumns) -> HashMap<(Oid, AttNum), Vec<(Oid, AttNum)>> {
    let mut exposures: HashMap<(Oid, AttNum), Vec<(Oid, AttNum)>> = HashMap::new();
    for (view, cols) in views {
        let mut sorted: Vec<_> = cols.keys().copied().collect();
        sorted.sort();
        for col in sorted {
            if let Some(base) = follow_view(views, *view, col) {
                exposures.entry(base).or_default().push((*view, col));
            }
        }
    }
    exposures
}

/// A primary key or unique constraint: (relation, is primary, columns).
type Key = (Oid, bool, Vec<AttNum>);

/// Foreign keys, and primary keys and unique constraints, in creation order.
async fn load_keys(tx: &Transaction<'_>) -> Result<(Vec<Edge>, Vec<Key>), tokio_postgres::Error> {
    let mut fks = Vec::new();
    let mut keys = Vec::new();
    for_each_row(tx, KEYS_SQL, &[], |r| {
        let oid: Oid = r.get(0);
        let kind: String = r.get(1);
        let cols: Vec<AttNum> = r.get(3);
        if kind == "f" {
            fks.push(Edge {
                constraint: r.get(2),
                source: oid,
                source_cols: cols,
                target: r.get(4),
                target_cols: r.get(5),
            });
        } else {
            keys.push((oid, kind == "p", cols));
        }
    })
    .await?;
    Ok((fks, keys))
}

/// Every foreign key as seen from every relation that shows its columns at either end.
fn edges_through_views(catalog: &Catalog, fks: &[Edge]) -> Vec<Edge> {
    let mut edges = Vec::new();
    for fk in fks {
        for (source, source_cols) in catalog.projections(fk.source, &fk.source_cols) {
            for (target, target_cols) in catalog.projections(fk.target, &fk.target_cols) {
                edges.push(Edge {
                    constraint: fk.constraint.clone(),
                    source,
                    source_cols: source_cols.clone(),
                    target,
                    target_cols,
                });
            }
        }
    }
    edges
}

/// The primary keys exposed views inherit, by (schema, view).
fn view_primary_keys(catalog: &Catalog) -> HashMap<(String, String), Vec<String>> {
    let mut view_keys = HashMap::new();
    for (oid, keys) in &catalog.primary {
        let Some(rel) = catalog.rels.get(oid).filter(|r| r.is_view && r.exposed) else {
            continue;
        };
        view_keys.insert(
            (rel.schema.clone(), rel.name.clone()),
            catalog.col_names(*oid, &union_of_keys(keys)),
        );
    }
    view_keys
}

/// A view joining tables has the union of their keys (PostgREST does the same).
fn union_of_keys(keys: &[Vec<AttNum>]) -> Vec<AttNum> {
    let mut cols: Vec<AttNum> = Vec::new();
    for key in keys {
        for c in key {
            if !cols.contains(c) {
                cols.push(*c);
            }
        }
    }
    cols
}

fn infer(catalog: &Catalog, edges: &[Edge]) -> HashMap<(String, String), Vec<Relationship>> {
    let mut out: HashMap<(String, String), Vec<Relationship>> = HashMap::new();
    let mut add = |r: Relationship| {
        out.entry((r.schema.clone(), r.table.clone()))
            .or_default()
            .push(r)
    };
    for e in edges {
        if let Some((forward, backward)) = foreign_key_relationships(catalog, e) {
            add(forward);
            add(backward);
        }
    }
    // Junction candidates are pairs of foreign keys of one source: compared within each
    // source's keys, not all against all (50,000 foreign keys: 2.5e9 pairs, 60 % of a
    // 5 s load). Same pairs, same order.
    let mut by_source: HashMap<Oid, Vec<usize>> = HashMap::new();
    for (i, e) in edges.iter().enumerate() {
        by_source.entry(e.source).or_default().push(i);
    }
    for (i, left) in edges.iter().enumerate() {
        for &k in &by_source[&left.source] {
            let right = &edges[k];
            if i == k || left.constraint == right.constraint {
                continue;
            }
            if let Some(r) = many_to_many(catalog, left, right) {
                add(r);
            }
        }
    }
    out
}

/// A foreign key seen from both ends: many-to-one (or one-to-one, when its columns are
/// unique) from the source, one-to-many (or one-to-one) from the target.
fn foreign_key_relationships(catalog: &Catalog, e: &Edge) -> Option<(Relationship, Relationship)> {
    let (source, target) = catalog.exposed_pair(e.source, e.target)?;
    let one_to_one = catalog.is_unique(e.source, &e.source_cols);
    let pairs: Vec<(String, String)> = catalog
        .col_names(e.source, &e.source_cols)
        .into_iter()
        .zip(catalog.col_names(e.target, &e.target_cols))
        .collect();
    let is_self = e.source == e.target;
    let forward = Relationship {
        schema: source.schema.clone(),
        table: source.name.clone(),
        foreign_table: target.name.clone(),
        cardinality: if one_to_one {
            Cardinality::OneToOne
        } else {
            Cardinality::ManyToOne
        },
        constraint: e.constraint.clone(),
        columns: pairs.clone(),
        junction: None,
        is_self,
        foreign_is_view: target.is_view,
        function: None,
        holds_key: true,
    };
    let backward = Relationship {
        schema: target.schema.clone(),
        table: target.name.clone(),
        foreign_table: source.name.clone(),
        cardinality: if one_to_one {
            Cardinality::OneToOne
        } else {
            Cardinality::OneToMany
        },
        constraint: e.constraint.clone(),
        columns: pairs.into_iter().map(|(a, b)| (b, a)).collect(),
        junction: None,
        is_self,
        foreign_is_view: source.is_view,
        function: None,
        holds_key: false,
    };
    Some((forward, backward))
}

/// Two foreign keys of one junction table whose primary key covers both: a many-to-many
/// relationship from `left`'s target to `right`'s.
fn many_to_many(catalog: &Catalog, left: &Edge, right: &Edge) -> Option<Relationship> {
    let (junction, from) = catalog.exposed_pair(left.source, left.target)?;
    let (_, to) = catalog.exposed_pair(right.source, right.target)?;
    if from.schema != to.schema {
        return None;
    }
    let cols = left.source_cols.iter().chain(&right.source_cols).copied();
    if !catalog.primary_covers(left.source, cols) {
        return None;
    }
    let jcols_left = catalog.col_names(left.source, &left.source_cols);
    let jcols_right = catalog.col_names(right.source, &right.source_cols);
    Some(Relationship {
        schema: from.schema.clone(),
        table: from.name.clone(),
        foreign_table: to.name.clone(),
        cardinality: Cardinality::ManyToMany,
        constraint: String::new(),
        columns: Vec::new(),
        junction: Some(Box::new(Junction {
            table: junction.name.clone(),
            source_constraint: left.constraint.clone(),
            source_columns: catalog
                .col_names(left.target, &left.target_cols)
                .into_iter()
                .zip(jcols_left)
                .collect(),
            target_constraint: right.constraint.clone(),
            target_columns: jcols_right
                .into_iter()
                .zip(catalog.col_names(right.target, &right.target_cols))
                .collect(),
        })),
        is_self: left.target == right.target,
        foreign_is_view: to.is_view,
        function: None,
        holds_key: false,
    })
}

#[cfg(test)]
mod tests {
    use super::view_targets;

    #[test]
    fn reads_only_the_top_level_target_list() {
        // Shape of `SELECT a.id, (SELECT b.id FROM b LIMIT 1) AS other FROM a`: the scalar
        // subquery's own target entry is nested inside the second top-level entry.
        let tree = "({QUERY :commandType 1 :rtable ({RANGETBLENTRY :relid 100}) :targetList \
            ({TARGETENTRY :expr {VAR :varno 1} :resno 1 :resname id :ressortgroupref 0 :resorigtbl 100 :resorigcol 1 :resjunk false} \
             {TARGETENTRY :expr {SUBLINK :subselect {QUERY :targetList ({TARGETENTRY :expr {VAR} :resno 1 :resname id :resorigtbl 200 :resorigcol 1 :resjunk false})}} :resno 2 :resname other :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) \
            :override 0})";
        assert_eq!(view_targets(tree), vec![(1, 100, 1), (2, 0, 0)]);
        assert_eq!(view_targets("({QUERY :targetList <> :x 1})"), vec![]);
        assert_eq!(
            view_targets("({QUERY :targetList ({TARGETENTRY :resno 1 :resname a\\ b :resorigtbl 5 :resorigcol 2})})"),
            vec![(1, 5, 2)]
        );
    }
}
