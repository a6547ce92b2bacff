//! The schema cache: what the exposed schemas hold, loaded once and shared as an
//! immutable snapshot.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[cfg(test)]
pub mod fixtures;
mod relationships;
pub mod routines;

use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};

/// A type name many columns share (`integer`, `text`...), held once per load: at 50,000
/// tables of 10 columns, two copies of it per column were 500,000 small allocations.
pub type TypeName = std::sync::Arc<str>;

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    /// `format_type()` of the column's type, e.g. `character varying(20)`.
    pub data_type: TypeName,
    /// Name of the base type (domains resolved), e.g. `jsonb`, `tsvector`, `int4`.
    pub base_type: TypeName,
    pub nullable: bool,
    /// Its position in the relation (`pg_attribute.attnum`; 0 for a computed field).
    #[serde(skip)]
    pub attnum: i16,
    pub default: Option<String>,
    pub enum_values: Vec<String>,
    pub description: Option<String>,
    /// For a computed field: the function computing it (boxed, like `repr`: most
    /// columns have none, and inline the two took 192 of a column's 340 bytes).
    pub function: Option<Box<QualifiedName>>,
    /// Data representation casts defined for the column's domain; see [`Column::repr`].
    #[serde(serialize_with = "serialize_repr")]
    pub repr: Option<Box<Repr>>,
}

fn serialize_repr<S: serde::Serializer>(repr: &Option<Box<Repr>>, s: S) -> Result<S::Ok, S::Error> {
    repr.as_deref().unwrap_or(&NO_REPR).serialize(s)
}

static NO_REPR: Repr = Repr {
    to_json: None,
    from_json: None,
    from_text: None,
};

/// A function's schema and name as the catalog has them (unquoted: `sql` quotes them
/// where it writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> QualifiedName {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// From the catalog's `ARRAY[schema, name]`.
    fn from_pair(pair: Option<Vec<String>>) -> Option<QualifiedName> {
        match pair?.as_slice() {
            [schema, name] => Some(QualifiedName::new(schema, name)),
            _ => None,
        }
    }
}

/// Shown as `schema.name` in /schema_cache and --dump-schema.
impl Serialize for QualifiedName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}.{}", self.schema, self.name))
    }
}

/// Casts a domain defines to present itself in JSON and to read values (PostgREST's data
/// representations): output through `domain -> json`, input through `json -> domain`
/// (bodies) and `text -> domain` (filter values). PostgreSQL ignores casts on domains in
/// CAST(), so these are the cast functions, called directly.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Repr {
    pub to_json: Option<QualifiedName>,
    pub from_json: Option<QualifiedName>,
    pub from_text: Option<QualifiedName>,
}

impl Repr {
    /// None when the domain defines no cast at all (most columns).
    fn boxed(self) -> Option<Box<Repr>> {
        let any = self.to_json.is_some() || self.from_json.is_some() || self.from_text.is_some();
        any.then(|| Box::new(self))
    }
}

impl Column {
    pub fn is_json(&self) -> bool {
        matches!(&*self.base_type, "json" | "jsonb")
    }

    pub fn is_tsvector(&self) -> bool {
        &*self.base_type == "tsvector"
    }

    /// The data representation casts of the column's domain (none for most columns).
    pub fn repr(&self) -> &Repr {
        self.repr.as_deref().unwrap_or(&NO_REPR)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `table`, `view`, `materialized_view`, `foreign_table` or `partitioned_table`.
    pub kind: &'static str,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Functions taking this table's row type and returning a scalar: selectable,
    /// filterable and orderable like columns, but not part of `*`.
    pub computed_fields: Vec<Column>,
    /// pg_relation_is_updatable(): bit 4 UPDATE, 8 INSERT, 16 DELETE.
    pub updatable_events: i32,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The methods OPTIONS answers in `Allow`, from what the relation accepts.
    pub fn allowed_methods(&self) -> String {
        let (update, insert, delete) = (
            self.updatable_events & 4 != 0,
            self.updatable_events & 8 != 0,
            self.updatable_events & 16 != 0,
        );
        let mut methods = vec!["OPTIONS", "GET", "HEAD"];
        if insert {
            methods.push("POST");
        }
        if insert && update && !self.primary_key.is_empty() {
            methods.push("PUT");
        }
        if update {
            methods.push("PATCH");
        }
        if delete {
            methods.push("DELETE");
        }
        methods.join(",")
    }

    /// A column or a computed field.
    pub fn field(&self, name: &str) -> Option<&Column> {
        self.column(name)
            .or_else(|| self.computed_fields.iter().find(|c| c.name == name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Cardinality {
    ManyToOne,
    OneToMany,
    OneToOne,
    ManyToMany,
}

impl Cardinality {
    pub fn is_to_one(self) -> bool {
        matches!(self, Cardinality::ManyToOne | Cardinality::OneToOne)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Cardinality::ManyToOne => "many-to-one",
            Cardinality::OneToMany => "one-to-many",
            Cardinality::OneToOne => "one-to-one",
            Cardinality::ManyToMany => "many-to-many",
        }
    }
}

/// The table in the middle of a many-to-many relationship.
#[derive(Debug, Clone, Serialize)]
pub struct Junction {
    pub table: String,
    /// The junction's foreign key to the source table and its (source, junction) columns.
    pub source_constraint: String,
    pub source_columns: Vec<(String, String)>,
    /// The junction's foreign key to the target table and its (junction, target) columns.
    pub target_constraint: String,
    pub target_columns: Vec<(String, String)>,
}

/// A way to embed `foreign_table` in `table`, from a foreign key (either direction) or
/// through a junction table. Both ends live in `schema`.
#[derive(Debug, Clone, Serialize)]
pub struct Relationship {
    pub schema: String,
    pub table: String,
    pub foreign_table: String,
    pub cardinality: Cardinality,
    /// The foreign key's name (M2M: empty; see `junction`).
    pub constraint: String,
    /// (column of `table`, column of `foreign_table`) pairs.
    pub columns: Vec<(String, String)>,
    /// Boxed, as `function`: at 50,000 tables of 100,000 relationships, inline they took
    /// 152 of a relationship's 296 bytes, and almost every relationship has neither.
    pub junction: Option<Box<Junction>>,
    pub is_self: bool,
    pub foreign_is_view: bool,
    /// For a computed relationship: the function taking a `table` row and returning
    /// `foreign_table` rows.
    pub function: Option<Box<QualifiedName>>,
    /// This side's columns hold the foreign key (many-to-one, or the referencing side of
    /// a one-to-one).
    pub holds_key: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SchemaCache {
    pub schemas: Vec<String>,
    pub tables: HashMap<String, HashMap<String, Table>>,
    /// Relationships by (schema, table) of their source.
    #[serde(skip)]
    pub relationships: HashMap<(String, String), Vec<Relationship>>,
    /// Settings attached to roles the authenticator can become (`ALTER ROLE r SET x = y`),
    /// applied to their requests.
    #[serde(skip)]
    pub role_settings: HashMap<String, Vec<(String, String)>>,
    /// Functions by (schema, name); several when overloaded.
    #[serde(skip)]
    pub routines: HashMap<(String, String), Vec<routines::Routine>>,
    /// Media type handler aggregates (custom renderings of rows).
    #[serde(skip)]
    pub aggregates: Vec<routines::AggHandler>,
    /// Comments on the exposed schemas (the OpenAPI document's title and description).
    pub schema_descriptions: HashMap<String, String>,
    #[serde(skip)]
    pub load_time: Duration,
}

/// One shared copy of each type name of a load.
#[derive(Default)]
struct Interner(std::collections::HashSet<TypeName>);

impl Interner {
    fn intern(&mut self, name: &str) -> TypeName {
        if let Some(known) = self.0.get(name) {
            return known.clone();
        }
        let name: TypeName = name.into();
        self.0.insert(name.clone());
        name
    }
}

/// Runs a catalog query and hands each row to `each` as PostgreSQL sends it, instead of
/// collecting them all first: at 10,000 tables the collected column rows were 110 MB of
/// a 160 MB peak during a load (heaptrack), more than the cache they become.
pub(super) async fn for_each_row(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    mut each: impl FnMut(Row),
) -> Result<(), tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let rows = tx.query_raw(sql, params.iter().copied()).await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        each(row);
    }
    Ok(())
}

const SCHEMA_COMMENTS_SQL: &str = "
SELECT n.nspname::text, d.description
FROM pg_namespace n
JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
WHERE n.nspname = ANY($1)";

/// The exposed relations with their comment, primary key (as column numbers, named
/// once the columns are in) and updatable events. A table is always fully updatable
/// (pg_relation_is_updatable says 28 for it after opening it, which costs a lock per
/// table), so only views are asked; keys and comments are joined, not looked up per row
/// (10,000 tables: 0.85 s -> 0.23 s, the same rows). Naming the key's columns here took
/// a hash of all of pg_attribute: 50,000 tables, 0.66 s -> 0.25 s without it.
const TABLES_SQL: &str = r#"
SELECT n.nspname::text, c.relname::text, c.relkind::text,
       d.description,
       coalesce(pk.conkey, '{}'),
       CASE WHEN c.relkind IN ('r', 'p') THEN 28 ELSE pg_relation_is_updatable(c.oid, true) END,
       c.relnatts::int4, c.oid
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p'
LEFT JOIN pg_description d
  ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND NOT c.relispartition
  AND n.nspname = ANY($1)
"#;

/// What a column's type says beyond its name, for the types that say anything: a
/// domain's base type (through domains over domains), an enum's labels (a domain's over
/// an enum too) and the representation casts a domain defines. Read apart from the
/// columns and joined to them by type oid in pgrest: a few rows, where the same joins
/// in the columns query ran once per column (six hash joins over 500,000 rows at
/// 50,000 tables, about 0.6 s of a 1.25 s query).
const TYPES_SQL: &str = r#"
WITH RECURSIVE domain_chain(oid, base, depth) AS (
  SELECT t.oid, t.typbasetype, 1 FROM pg_type t WHERE t.typtype = 'd'
  UNION ALL
  SELECT c.oid, d.typbasetype, c.depth + 1
  FROM domain_chain c JOIN pg_type d ON d.oid = c.base AND d.typtype = 'd'
),
domain_base AS (
  SELECT DISTINCT ON (c.oid) c.oid, b.oid AS base_oid, b.typname
  FROM domain_chain c JOIN pg_type b ON b.oid = c.base
  ORDER BY c.oid, c.depth DESC
),
enum_labels AS (
  SELECT e.enumtypid, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
  FROM pg_enum e GROUP BY e.enumtypid
),
domain_casts AS (
  SELECT k.castsource, k.casttarget, ARRAY[fn.nspname::text, f.proname::text] AS fn
  FROM pg_cast k
  JOIN pg_type dt ON dt.typtype = 'd' AND dt.oid IN (k.castsource, k.casttarget)
  JOIN pg_proc f ON f.oid = k.castfunc
  JOIN pg_namespace fn ON fn.oid = f.pronamespace
)
SELECT t.oid, bt.typname::text, coalesce(el.labels, '{}'),
       to_json.fn, from_json.fn, from_text.fn
FROM pg_type t
LEFT JOIN domain_base bt ON bt.oid = t.oid
LEFT JOIN enum_labels el ON el.enumtypid = coalesce(bt.base_oid, t.oid)
LEFT JOIN domain_casts to_json
  ON t.typtype = 'd' AND to_json.castsource = t.oid AND to_json.casttarget = 'json'::regtype
LEFT JOIN domain_casts from_json
  ON t.typtype = 'd' AND from_json.casttarget = t.oid AND from_json.castsource = 'json'::regtype
LEFT JOIN domain_casts from_text
  ON t.typtype = 'd' AND from_text.casttarget = t.oid AND from_text.castsource = 'text'::regtype
WHERE t.typtype IN ('d', 'e')
"#;

/// Every column of the exposed relations by its relation's oid, in no particular order
/// (`load_columns` sorts each relation's by attnum: sorting 500,000 wide rows spilled
/// 147 MB to disk in PostgreSQL, 2.1 s -> 1.1 s at 50,000 tables without it), with only
/// what each column holds itself: its type's details come from `TYPES_SQL` and comments
/// from `COLUMN_COMMENTS_SQL`, joined in pgrest (50,000 tables: 1.25 -> 0.85 s in psql,
/// 0.5 s of it sending the rows). A default is deparsed without its relation (a DEFAULT
/// cannot refer to a column, and generated columns are skipped): with it, pg_get_expr
/// opens and locks every table, 2.3 s of 6.5 s at 50,000 tables. An identity column's
/// sequence is found through pg_depend's index on the referenced object, which needs
/// refclassid named: without it, PostgreSQL scanned all of pg_depend once per identity
/// column.
const COLUMNS_SQL: &str = r#"
SELECT a.attrelid, a.attname::text,
       format_type(a.atttypid, a.atttypmod),
       a.atttypid, t.typname::text,
       NOT (a.attnotnull OR (t.typtype = 'd' AND t.typnotnull)),
       CASE
         WHEN a.attgenerated <> '' THEN NULL
         WHEN a.attidentity <> '' THEN (
           SELECT format('nextval(%L::regclass)', format('%I.%I', sn.nspname, sq.relname))
           FROM pg_depend d
           JOIN pg_class sq ON sq.oid = d.objid AND sq.relkind = 'S'
           JOIN pg_namespace sn ON sn.oid = sq.relnamespace
           WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid
             AND d.refobjsubid = a.attnum AND d.classid = 'pg_class'::regclass
             AND d.deptype = 'i'
           LIMIT 1)
         WHEN a.atthasdef THEN pg_get_expr(ad.adbin, 0)
         WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0)
       END,
       a.attnum
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND NOT c.relispartition
  AND n.nspname = ANY($1)
  AND a.attnum > 0 AND NOT a.attisdropped
"#;

/// Comments on the exposed relations' columns, by relation oid and attnum.
const COLUMN_COMMENTS_SQL: &str = r#"
SELECT d.objoid, d.objsubid::int2, d.description
FROM pg_description d
JOIN pg_class c ON c.oid = d.objoid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE d.classoid = 'pg_class'::regclass AND d.objsubid > 0
  AND n.nspname = ANY($1)
"#;

/// Settings of roles the authenticator may become, for any database or this one (the
/// database-specific ones last, so they win), limited to what a user may set.
const ROLE_SETTINGS_SQL: &str = r#"
SELECT r.rolname::text, split_part(s.setting, '=', 1),
       substr(s.setting, strpos(s.setting, '=') + 1)
FROM pg_db_role_setting d
JOIN pg_roles r ON r.oid = d.setrole
CROSS JOIN LATERAL unnest(d.setconfig) AS s(setting)
WHERE d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND r.rolname <> current_user
  AND pg_has_role(current_user, r.oid, 'MEMBER')
  AND EXISTS (SELECT 1 FROM pg_settings p
              WHERE p.name = split_part(s.setting, '=', 1) AND p.context = 'user')
ORDER BY d.setdatabase
"#;

/// Functions of one argument of a table's row type, in the exposed schemas.
const ROW_FUNCTIONS_SQL: &str = r#"
SELECT pn.nspname::text, p.proname::text, an.nspname::text, ac.relname::text,
       p.proretset, p.prorows::float8, rn.nspname::text, rc.relname::text,
       coalesce(rbt.typname, rt.typname)::text, format_type(p.prorettype, NULL),
       obj_description(p.oid, 'pg_proc')
FROM pg_proc p
JOIN pg_namespace pn ON pn.oid = p.pronamespace
JOIN pg_type at ON at.oid = p.proargtypes[0]
JOIN pg_class ac ON ac.oid = at.typrelid
JOIN pg_namespace an ON an.oid = ac.relnamespace
JOIN pg_type rt ON rt.oid = p.prorettype
LEFT JOIN pg_type rbt ON rt.typtype = 'd' AND rbt.oid = rt.typbasetype
LEFT JOIN pg_class rc ON rt.typrelid <> 0 AND rc.oid = rt.typrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE p.prokind = 'f' AND p.pronargs = 1
  AND pn.nspname = ANY($1) AND an.nspname = ANY($1)
ORDER BY p.oid
"#;

/// Computed fields (scalar results) and computed relationships (table rows as results:
/// `ROWS 1` or a single row is to-one, a set is to-many).
async fn load_functions(
    tx: &Transaction<'_>,
    schemas: &[String],
    tables: &mut HashMap<String, HashMap<String, Table>>,
    relationships: &mut HashMap<(String, String), Vec<Relationship>>,
) -> Result<(), tokio_postgres::Error> {
    for r in tx.query(ROW_FUNCTIONS_SQL, &[&schemas]).await? {
        let arg_schema: String = r.get(2);
        let arg_table: String = r.get(3);
        let returns_set: bool = r.get(4);
        let ret_schema: Option<String> = r.get(6);
        let ret_table: Option<String> = r.get(7);
        match (ret_schema, ret_table) {
            (Some(rs), Some(rt)) if rs == arg_schema && schemas.contains(&rs) => {
                let foreign_is_view = tables
                    .get(&rs)
                    .and_then(|t| t.get(&rt))
                    .is_some_and(|t| t.kind != "table");
                relationships
                    .entry((arg_schema, arg_table))
                    .or_default()
                    .push(computed_relationship(&r, rt, foreign_is_view));
            }
            (None, None) if !returns_set => {
                if let Some(t) = tables
                    .get_mut(&arg_schema)
                    .and_then(|t| t.get_mut(&arg_table))
                {
                    t.computed_fields.push(computed_field(&r));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A ROW_FUNCTIONS_SQL row returning rows of `foreign_table`, as a relationship of the
/// table its argument is a row of.
fn computed_relationship(r: &Row, foreign_table: String, foreign_is_view: bool) -> Relationship {
    let fn_schema: String = r.get(0);
    let fn_name: String = r.get(1);
    let schema: String = r.get(2);
    let table: String = r.get(3);
    let returns_set: bool = r.get(4);
    let rows: f64 = r.get(5);
    let to_one = !returns_set || rows == 1.0;
    Relationship {
        schema,
        is_self: foreign_table == table,
        table,
        foreign_table,
        cardinality: if to_one {
            Cardinality::ManyToOne
        } else {
            Cardinality::OneToMany
        },
        constraint: fn_name.clone(),
        columns: Vec::new(),
        junction: None,
        foreign_is_view,
        holds_key: false,
        function: Some(Box::new(QualifiedName::new(&fn_schema, &fn_name))),
    }
}

/// A ROW_FUNCTIONS_SQL row returning a scalar, as a computed field of its argument's table.
fn computed_field(r: &Row) -> Column {
    let fn_schema: String = r.get(0);
    let fn_name: String = r.get(1);
    Column {
        name: fn_name.clone(),
        data_type: r.get::<_, &str>(9).into(),
        base_type: r.get::<_, &str>(8).into(),
        nullable: true,
        attnum: 0,
        default: None,
        enum_values: Vec::new(),
        description: r.get(10),
        repr: None,
        function: Some(Box::new(QualifiedName::new(&fn_schema, &fn_name))),
    }
}

/// A relation while its columns come in, by its oid: the column rows name their
/// relation by oid (a u32 hash per row, where schema and name were two strings to send,
/// read and hash for each of 500,000 columns at 50,000 tables).
struct Loading {
    table: Table,
    /// The primary key's column numbers, named once the columns are in.
    key: Vec<i16>,
}

/// Tables, views and the other relations of the exposed schemas, by oid, without their
/// columns yet.
async fn load_tables(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<HashMap<u32, Loading>, tokio_postgres::Error> {
    let mut tables = HashMap::new();
    for_each_row(tx, TABLES_SQL, &[&schemas], |row| {
        let relkind: &str = row.get(2);
        let table = Table {
            schema: row.get(0),
            name: row.get(1),
            kind: kind_name(relkind),
            description: row.get(3),
            // Room for every column (dropped ones included) before they arrive: the
            // columns come in any order, and growing 50,000 vectors by turns left 35 MB
            // of their outgrown blocks scattered in the allocator after the load.
            columns: Vec::with_capacity(row.get::<_, i32>(6).max(0) as usize),
            primary_key: Vec::new(),
            computed_fields: Vec::new(),
            updatable_events: row.get(5),
        };
        let key = row.get(4);
        tables.insert(row.get::<_, u32>(7), Loading { table, key });
    })
    .await?;
    Ok(tables)
}

/// A domain's or an enum's details, by type oid (see `TYPES_SQL`).
struct TypeDetails {
    /// A domain's base type.
    base: Option<String>,
    labels: Vec<String>,
    repr: Option<Box<Repr>>,
}

async fn load_type_details(
    tx: &Transaction<'_>,
) -> Result<HashMap<u32, TypeDetails>, tokio_postgres::Error> {
    let mut types = HashMap::new();
    for_each_row(tx, TYPES_SQL, &[], |row| {
        let repr = Repr {
            to_json: QualifiedName::from_pair(row.get(3)),
            from_json: QualifiedName::from_pair(row.get(4)),
            from_text: QualifiedName::from_pair(row.get(5)),
        };
        let details = TypeDetails {
            base: row.get(1),
            labels: row.get(2),
            repr: repr.boxed(),
        };
        types.insert(row.get::<_, u32>(0), details);
    })
    .await?;
    Ok(types)
}

/// Column comments by (relation oid, attnum).
async fn load_column_comments(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<HashMap<(u32, i16), String>, tokio_postgres::Error> {
    let mut comments = HashMap::new();
    for_each_row(tx, COLUMN_COMMENTS_SQL, &[&schemas], |row| {
        comments.insert((row.get(0), row.get(1)), row.get(2));
    })
    .await?;
    Ok(comments)
}

async fn load_columns(
    tx: &Transaction<'_>,
    schemas: &[String],
    tables: &mut HashMap<u32, Loading>,
    types: &HashMap<u32, TypeDetails>,
) -> Result<(), tokio_postgres::Error> {
    let mut type_names = Interner::default();
    for_each_row(tx, COLUMNS_SQL, &[&schemas], |row| {
        let Some(loading) = tables.get_mut(&row.get::<_, u32>(0)) else {
            return;
        };
        let details = types.get(&row.get::<_, u32>(3));
        let base_type = details
            .and_then(|d| d.base.as_deref())
            .unwrap_or_else(|| row.get(4));
        loading.table.columns.push(Column {
            name: row.get(1),
            data_type: type_names.intern(row.get(2)),
            base_type: type_names.intern(base_type),
            nullable: row.get(5),
            attnum: row.get(7),
            default: row.get(6),
            enum_values: details.map(|d| d.labels.clone()).unwrap_or_default(),
            description: None,
            function: None,
            repr: details.and_then(|d| d.repr.clone()),
        });
    })
    .await?;
    Ok(())
}

/// Each relation with its columns in attnum order, their comments and its primary key
/// by name, by schema and name.
fn finish_tables(
    mut loaded: HashMap<u32, Loading>,
    comments: HashMap<(u32, i16), String>,
) -> HashMap<String, HashMap<String, Table>> {
    for ((oid, attnum), comment) in comments {
        let column = loaded
            .get_mut(&oid)
            .and_then(|l| l.table.columns.iter_mut().find(|c| c.attnum == attnum));
        if let Some(column) = column {
            column.description = Some(comment);
        }
    }
    let mut tables: HashMap<String, HashMap<String, Table>> = HashMap::new();
    for Loading { mut table, key } in loaded.into_values() {
        table.columns.sort_unstable_by_key(|c| c.attnum);
        // Only a table with dropped columns has room to spare.
        if table.columns.len() < table.columns.capacity() {
            table.columns.shrink_to_fit();
        }
        table.primary_key = key
            .iter()
            .filter_map(|n| {
                let column = table.columns.iter().find(|c| c.attnum == *n)?;
                Some(column.name.clone())
            })
            .collect();
        let by_name = tables.entry(table.schema.clone()).or_default();
        by_name.insert(table.name.clone(), table);
    }
    tables
}

/// Views without a primary key of their own take the one inferred from their base tables.
fn adopt_view_keys(
    tables: &mut HashMap<String, HashMap<String, Table>>,
    view_keys: HashMap<(String, String), Vec<String>>,
) {
    for ((schema, name), key) in view_keys {
        if let Some(view) = tables.get_mut(&schema).and_then(|t| t.get_mut(&name)) {
            if view.primary_key.is_empty() {
                view.primary_key = key;
            }
        }
    }
}

async fn load_role_settings(
    tx: &Transaction<'_>,
) -> Result<HashMap<String, Vec<(String, String)>>, tokio_postgres::Error> {
    let mut role_settings: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in tx.query(ROLE_SETTINGS_SQL, &[]).await? {
        role_settings
            .entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2)));
    }
    Ok(role_settings)
}

async fn load_schema_descriptions(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<HashMap<String, String>, tokio_postgres::Error> {
    let mut schema_descriptions = HashMap::new();
    for r in tx.query(SCHEMA_COMMENTS_SQL, &[&schemas]).await? {
        schema_descriptions.insert(r.get(0), r.get(1));
    }
    Ok(schema_descriptions)
}

fn kind_name(relkind: &str) -> &'static str {
    match relkind {
        "v" => "view",
        "m" => "materialized_view",
        "f" => "foreign_table",
        "p" => "partitioned_table",
        _ => "table",
    }
}

impl SchemaCache {
    /// Loads the cache in one read-only transaction.
    pub async fn load(
        client: &mut Client,
        schemas: &[String],
    ) -> Result<SchemaCache, tokio_postgres::Error> {
        let started = Instant::now();
        let tx = client.build_transaction().read_only(true).start().await?;
        // With an empty search_path, type names and default expressions come out
        // schema-qualified, so they mean the same thing under any request's search_path.
        // JIT: the catalog queries' cost estimates are huge on big schemas, so PostgreSQL
        // would spend most of the load compiling them (≈0.7 s of 2.5 s at 10,000 tables).
        tx.batch_execute("SET LOCAL search_path TO ''; SET LOCAL jit TO off")
            .await?;
        let mut phase = Instant::now();
        let mut lap = |what: &str| {
            tracing::debug!(
                "schema cache: {what} in {:.1} ms",
                phase.elapsed().as_secs_f64() * 1e3
            );
            phase = Instant::now();
        };
        // The relationship queries go out with the table and column ones (pipelined on
        // the connection): PostgreSQL answers them while the columns are being read.
        let tables_and_columns = async {
            let (mut loaded, types, comments) = tokio::try_join!(
                load_tables(&tx, schemas),
                load_type_details(&tx),
                load_column_comments(&tx, schemas)
            )?;
            load_columns(&tx, schemas, &mut loaded, &types).await?;
            Ok(finish_tables(loaded, comments))
        };
        let (mut tables, fetched) =
            tokio::try_join!(tables_and_columns, relationships::fetch(&tx, schemas))?;
        lap("tables, columns and the relationships' catalogs");
        let inferred = relationships::infer_all(fetched, &tables);
        lap("relationships inferred");
        let mut relationships = inferred.relationships;
        adopt_view_keys(&mut tables, inferred.view_keys);
        load_functions(&tx, schemas, &mut tables, &mut relationships).await?;
        lap("computed fields");
        let routines = routines::load(&tx, schemas).await?;
        let aggregates = routines::load_aggregates(&tx, schemas).await?;
        lap("routines");
        let role_settings = load_role_settings(&tx).await?;
        let schema_descriptions = load_schema_descriptions(&tx, schemas).await?;
        tx.commit().await?;
        lap("role settings and schema comments");

        Ok(SchemaCache {
            schemas: schemas.to_vec(),
            relationships,
            routines,
            aggregates,
            role_settings,
            tables,
            schema_descriptions,
            load_time: started.elapsed(),
        })
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.get(schema).and_then(|t| t.get(name))
    }

    /// The closest table name in `schema`, for "Perhaps you meant" hints.
    pub fn closest_table(&self, schema: &str, name: &str) -> Option<String> {
        let tables = self.tables.get(schema)?;
        if tables.len() >= 500 {
            return None;
        }
        crate::hints::closest(tables.keys().map(String::as_str), name, 0.75)
    }

    pub fn relationships_of(&self, schema: &str, table: &str) -> &[Relationship] {
        self.relationships
            .get(&(schema.to_string(), table.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn table_count(&self) -> usize {
        self.tables.values().map(HashMap::len).sum()
    }

    /// What the cache holds, for the start-up and reload log lines.
    pub fn summary(&self) -> String {
        let relationships: usize = self.relationships.values().map(Vec::len).sum();
        let functions: usize = self.routines.values().map(Vec::len).sum();
        let representations = self
            .tables
            .values()
            .flat_map(HashMap::values)
            .flat_map(|t| &t.columns)
            .filter(|c| c.repr.is_some())
            .count();
        let handlers = self.aggregates.len()
            + self
                .routines
                .values()
                .flatten()
                .filter(|r| r.media.is_some())
                .count();
        format!(
            "{} relations, {relationships} relationships, {functions} functions, \
             {representations} domain representations, {handlers} media type handlers, \
             loaded in {:.1} ms",
            self.table_count(),
            self.load_time.as_secs_f64() * 1000.0
        )
    }
}
