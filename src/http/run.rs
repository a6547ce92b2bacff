//! Running a plan: render its statements, run them in the request's transaction, and
//! turn the outcome into the response PostgREST gives for it.

use bytes::Bytes;

use super::body::ApiBody;
use super::response::*;
use super::templates::{
    self, CallFacts, Known, PayloadShape, ReadFacts, ReadShape, ReadTemplate, Rendering, WriteFacts,
};
use crate::auth::Identity;
use crate::db;
use crate::db::replicas::{self, Lsn};
use crate::error::ApiError;
use crate::ops::state::{AppState, Snapshot};
use crate::plan::{self, CallPlan, MutatePlan, Plan, ReadPlan, Resolved, RootPlan};
use crate::request::payload::Payload;
use crate::request::prefer::Resolution;
use crate::request::{ApiRequest, CountPref, Method, PlanRequest};
use crate::sql::envelope::TxShape;
use crate::sql::{self, Envelope, Statement};
use crate::timing::{time, Stage};

/// The documentation page a browser gets at `/`.
const DOCS_PAGE: &str = include_str!("../openapi/docs.html");
/// Content-Range of a write that was not asked to count.
const UNCOUNTED_RANGE: hyper::header::HeaderValue = hyper::header::HeaderValue::from_static("*/*");

/// PostgREST asks the planner for count=estimated whenever the exact count passes
/// db-max-rows, and without db-max-rows always (its Maybe comparison: Just n > Nothing).
fn counted_by_planner(count: Option<CountPref>) -> bool {
    matches!(count, Some(CountPref::Planned | CountPref::Estimated))
}

/// One request's context while its plan runs.
pub struct Run<'r> {
    pub state: &'r AppState,
    pub snap: &'r Snapshot,
    pub api: &'r ApiRequest,
    /// `None` only for OPTIONS, which runs no SQL.
    pub identity: Option<&'r Identity>,
    pub resolved: &'r Resolved,
}

impl<'r> Run<'r> {
    pub async fn plan(&self, plan: Plan<'_>) -> Result<Resp, ApiError> {
        match plan {
            Plan::Read(read) => self.read(read).await,
            Plan::Mutate(write) => self.write(write).await,
            Plan::Call(call) => self.call(call).await,
            Plan::Info(methods) => Ok(allow(&methods)),
            Plan::Root(root) => self.root(root).await,
        }
    }

    /// The transaction envelope of this request.
    fn envelope(
        &self,
        read_only: bool,
        hoisted: Vec<(String, String)>,
    ) -> Result<Envelope<'_>, ApiError> {
        let identity = self
            .identity
            .ok_or_else(|| ApiError::Internal("a statement without an identity".into()))?;
        let role_settings = self
            .snap
            .schema
            .role_settings
            .get(&identity.role)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let shape = TxShape {
            schema: &self.resolved.schema,
            read_only,
            role_settings,
            hoisted,
        };
        Ok(Envelope::for_request(
            self.api,
            identity,
            &self.snap.config,
            shape,
        ))
    }

    fn pool(&self) -> &db::Pool {
        &self.state.pool
    }

    async fn read(&self, plan: ReadPlan<'_>) -> Result<Resp, ApiError> {
        let main = time(Stage::Plan, || sql::read_statement(&plan));
        if let Some(explain) = &self.resolved.negotiated.explain {
            return self.explain(explain, &main, true).await;
        }
        self.read_rendered(&plan, &main, &ReadFacts::of(&plan))
            .await
    }

    /// Runs a read planned for this request, with the planner's count when it asks.
    async fn read_rendered(
        &self,
        plan: &ReadPlan<'_>,
        main: &Statement,
        facts: &ReadFacts,
    ) -> Result<Resp, ApiError> {
        let count = counted_by_planner(plan.count).then(|| sql::planned_count_statement(plan));
        self.read_statement(main, count.as_ref(), facts).await
    }

    /// A table read through the snapshot's templates: a known shape binds its values
    /// into its statement; one seen once before is planned, and learnt from a second
    /// planning with its values replaced by sentinels (see `templates`); a new one is
    /// planned and noted.
    pub async fn read_templated(
        &self,
        shape: &ReadShape<'_>,
        known: &Known<ReadTemplate>,
        body: Option<Bytes>,
    ) -> Result<Resp, ApiError> {
        let learnable = matches!(self.api.action, crate::request::Action::Read { .. })
            && self.resolved.negotiated.explain.is_none();
        match known {
            Known::Template(t) => {
                let main = time(Stage::Plan, || t.statement(shape.values()));
                self.read_statement(&main, None, &t.facts).await
            }
            Known::Unknown if learnable => {
                self.snap.reads.seen(shape.key());
                self.plan(self.planned(self.api, body)?).await
            }
            Known::Seen if learnable => {
                let Plan::Read(plan) = self.planned(self.api, body)? else {
                    return Err(ApiError::Internal(
                        "a table read without a read plan".into(),
                    ));
                };
                let (main, facts) = time(Stage::Plan, || {
                    (sql::read_statement(&plan), ReadFacts::of(&plan))
                });
                self.snap
                    .reads
                    .put(shape.key(), self.learn(shape, &main, &facts));
                self.read_rendered(&plan, &main, &facts).await
            }
            Known::Unknown | Known::Seen | Known::NotTemplatable => {
                self.plan(self.planned(self.api, body)?).await
            }
        }
    }

    /// The plan of a request, against this run's snapshot.
    pub fn planned(&self, api: &ApiRequest, body: Option<Bytes>) -> Result<Plan<'r>, ApiError> {
        let snap = self.snap;
        time(Stage::Plan, || {
            plan::plan(api, self.resolved, &snap.schema, &snap.config, body)
        })
    }

    /// The template of a read's shape, from its statement and a probe's.
    fn learn(
        &self,
        shape: &ReadShape,
        main: &Statement,
        facts: &ReadFacts,
    ) -> Option<ReadTemplate> {
        let mut probe_api = self.api.clone();
        let probe_query = shape.probe_query();
        probe_api.query = crate::request::parse_query_for(&probe_query, false).ok()?;
        let Ok(Plan::Read(probe)) = self.planned(&probe_api, None) else {
            return None;
        };
        let real = Rendering {
            statement: main,
            facts,
        };
        let probe = Rendering {
            statement: &sql::read_statement(&probe),
            facts: &ReadFacts::of(&probe),
        };
        templates::learn(real, probe, shape, &probe_query, self.resolved)
    }

    /// Runs a read's statement (and the planner's count, if asked) and answers.
    async fn read_statement(
        &self,
        main: &Statement,
        count: Option<&Statement>,
        facts: &ReadFacts,
    ) -> Result<Resp, ApiError> {
        let env = self.envelope(true, Vec::new())?;
        let out = match self.replica_read(&env)? {
            None => db::run_read(self.pool(), &env, main, count).await?,
            Some(wanted) => {
                let run = |pool| Box::pin(db::run_read(pool, &env, main, count)) as _;
                self.state.replicas.read(self.pool(), wanted, run).await?
            }
        };
        let total = match facts.count {
            None => None,
            Some(CountPref::Exact) => out.total,
            Some(CountPref::Planned) => out.planned_total,
            Some(CountPref::Estimated) => match (out.total, out.planned_total, facts.max_rows) {
                (Some(exact), Some(planned), Some(max)) if exact > max => Some(exact.max(planned)),
                (Some(exact), Some(planned), None) => Some(exact.max(planned)),
                (exact, _, _) => exact,
            },
        };
        if facts.media_type.is_singular() && out.page_total != 1 {
            return Err(ApiError::Singularity(out.page_total));
        }
        let (status, content_range) = page_status(facts.offset, out.page_total, total)?;
        let aggregate = facts.aggregate.as_ref();
        let mut r = rows_response(status, out.body, facts.head, facts.media_type, aggregate);
        if let Some(rest) = out.rest {
            let first = std::mem::replace(r.body_mut(), ApiBody::whole(Bytes::new()));
            *r.body_mut() = first.followed_by(rest);
        }
        set_owned(&mut r, hyper::header::CONTENT_RANGE, content_range);
        set_owned(
            &mut r,
            hyper::header::CONTENT_LOCATION,
            self.content_location(&facts.table_name),
        );
        warn_legacy_targets(&mut r, self.api, &facts.legacy_targets);
        finish_response(
            r,
            preference_applied(self.api, false, self.resolved.tx.overridable),
            out.response_headers.as_deref(),
            out.response_status.as_deref(),
        )
    }

    /// `/table?canonical query`, as PostgREST sends in Content-Location.
    fn content_location(&self, name: &str) -> String {
        let query = self.api.query.canonical.as_str();
        let mut out = String::with_capacity(name.len() + query.len() + 2);
        out.push('/');
        out.push_str(name);
        if !query.is_empty() {
            out.push('?');
            out.push_str(query);
        }
        out
    }

    async fn write(&self, mut plan: MutatePlan<'_>) -> Result<Resp, ApiError> {
        // The payload moves into the statement's parameters.
        let statement = time(Stage::Plan, || sql::mutate_statement(&mut plan));
        self.write_statement(statement, &WriteFacts::of(&plan))
            .await
    }

    /// An insert through the snapshot's templates: its payload parsed, a known shape
    /// (with those keys) binds the payload into its statement; one seen once before is
    /// planned and learnt from a second planning with a sentinel payload (see
    /// `templates`); a new one is planned and noted.
    pub async fn insert_templated(
        &self,
        shape: &PayloadShape,
        body: Option<Bytes>,
    ) -> Result<Resp, ApiError> {
        let api = self.api;
        let payload = time(Stage::Plan, || {
            plan::mutate::payload(api, body.unwrap_or_default())
        })?;
        let Some(payload) = payload else {
            return self.write(self.mutate_planned(None)?).await;
        };
        let Some(key) = shape.key_with(&payload.keys) else {
            return self.write(self.mutate_planned(Some(payload))?).await;
        };
        let learnable = self.resolved.negotiated.explain.is_none();
        match self.snap.inserts.get(&key) {
            Known::Template(t) => {
                let statement = time(Stage::Plan, || t.statement(payload.json));
                self.write_statement(statement, &t.facts).await
            }
            Known::Unknown if learnable => {
                self.snap.inserts.seen(&key);
                self.write(self.mutate_planned(Some(payload))?).await
            }
            Known::Seen if learnable => {
                let probe_payload = Payload {
                    json: templates::PAYLOAD_SENTINEL.to_string(),
                    keys: payload.keys.clone(),
                };
                let text = payload.json.clone();
                let mut plan = self.mutate_planned(Some(payload))?;
                let facts = WriteFacts::of(&plan);
                let statement = time(Stage::Plan, || sql::mutate_statement(&mut plan));
                let template = self
                    .mutate_planned(Some(probe_payload))
                    .ok()
                    .and_then(|mut p| {
                        let real = Rendering {
                            statement: &statement,
                            facts: &facts,
                        };
                        let probe = Rendering {
                            statement: &sql::mutate_statement(&mut p),
                            facts: &WriteFacts::of(&p),
                        };
                        templates::learn_payload(real, probe, &text)
                    });
                self.snap.inserts.put(&key, template);
                self.write_statement(statement, &facts).await
            }
            Known::Unknown | Known::Seen | Known::NotTemplatable => {
                self.write(self.mutate_planned(Some(payload))?).await
            }
        }
    }

    /// The plan of a write with its payload parsed.
    fn mutate_planned(&self, payload: Option<Payload>) -> Result<MutatePlan<'r>, ApiError> {
        let crate::request::Action::Mutate { relation } = &self.api.action else {
            return Err(ApiError::Internal("an insert shape without a write".into()));
        };
        let snap = self.snap;
        let neg = &self.resolved.negotiated;
        let config = plan::PlanConfig::of(&snap.config);
        time(Stage::Plan, || {
            let schema = self.resolved.schema.as_str();
            plan::mutate::mutate_plan(
                self.api,
                neg,
                &snap.schema,
                schema,
                relation,
                payload,
                &config,
            )
        })
    }

    /// Runs a write's statement and answers.
    async fn write_statement(
        &self,
        statement: Statement,
        facts: &WriteFacts,
    ) -> Result<Resp, ApiError> {
        if let Some(explain) = &self.resolved.negotiated.explain {
            return self.explain(explain, &statement, false).await;
        }
        let env = self.envelope(false, Vec::new())?;
        let api = self.api;
        let commit = self.resolved.tx.commit;
        let singular = self.resolved.negotiated.media_type.is_singular();
        let strict_max = api.prefs.max_affected.filter(|_| {
            api.prefs.strict == Some(true) && matches!(api.method, Method::Patch | Method::Delete)
        });
        let is_put = facts.is_put;
        // A write that nothing can refuse afterwards commits in the same round trip.
        let (out, lsn) = if commit && !singular && strict_max.is_none() && !is_put {
            self.committed(&env, &statement, true).await?
        } else {
            self.decided(&env, &statement, |o| {
                refuse_count(o.page_total, singular, strict_max)?;
                if is_put && o.page_total == 0 {
                    return Err(ApiError::PutMismatch);
                }
                Ok(commit)
            })
            .await?
        };
        self.written(facts, out).map(|r| with_lsn(r, lsn))
    }

    /// Where a statement that only reads runs: `None` on the primary (no replicas
    /// configured, a db-pre-request, which may write, or a SERIALIZABLE transaction,
    /// which a standby refuses), `Some` on a standby that has replayed the LSN the
    /// request names, if it names one.
    fn replica_read(&self, env: &Envelope) -> Result<Option<Option<Lsn>>, ApiError> {
        let primary_only = self.snap.config.db_pre_request.is_some() || env.serializable();
        if self.state.replicas.is_empty() || primary_only {
            return Ok(None);
        }
        let header = self.api.headers.get(replicas::LSN_HEADER_LOWER);
        replicas::wanted_lsn(header, &self.api.cookies).map(Some)
    }

    /// A statement committed with everything else in one round trip; with replicas, one
    /// that `writes` also reads its commit LSN.
    async fn committed(
        &self,
        env: &Envelope<'_>,
        stmt: &Statement,
        writes: bool,
    ) -> Result<(db::Outcome, Option<Lsn>), ApiError> {
        if writes && !self.state.replicas.is_empty() {
            return replicas::run_committed_lsn(self.pool(), env, stmt).await;
        }
        Ok((db::run_committed(self.pool(), env, stmt).await?, None))
    }

    /// A write committed or rolled back as `decide` says once its outcome is seen; with
    /// replicas, a committed one reads its commit LSN.
    async fn decided(
        &self,
        env: &Envelope<'_>,
        stmt: &Statement,
        decide: impl FnOnce(&db::Outcome) -> Result<bool, ApiError>,
    ) -> Result<(db::Outcome, Option<Lsn>), ApiError> {
        if !env.read_only && !self.state.replicas.is_empty() {
            return replicas::run_write_lsn(self.pool(), env, stmt, decide).await;
        }
        Ok((db::run_write(self.pool(), env, stmt, decide).await?, None))
    }

    /// The response to a write's outcome.
    fn written(&self, facts: &WriteFacts, out: db::Outcome) -> Result<Resp, ApiError> {
        let api = self.api;
        let n = out.page_total;
        let counted = api.prefs.count.is_some();
        let total: std::borrow::Cow<str> = match counted {
            true => n.to_string().into(),
            false => "*".into(),
        };
        let mut r = if facts.representation {
            let neg = &self.resolved.negotiated;
            let status = write_status(api, facts, &out);
            rows_response(
                status,
                out.body.clone(),
                false,
                neg.media_type,
                neg.aggregate.as_ref(),
            )
        } else {
            body_response(write_status(api, facts, &out), Bytes::new(), false)
        };
        match api.method {
            Method::Patch if n > 0 => set_header(
                &mut r,
                hyper::header::CONTENT_RANGE,
                &format!("0-{}/{total}", n - 1),
            ),
            Method::Put => {}
            _ if !counted => set_static(&mut r, hyper::header::CONTENT_RANGE, UNCOUNTED_RANGE),
            _ => set_header(&mut r, hyper::header::CONTENT_RANGE, &format!("*/{total}")),
        }
        if facts.location {
            if let Some(loc) = location(&facts.table_name, &out.body) {
                set_header(&mut r, hyper::header::LOCATION, &loc);
            }
        }
        finish_response(
            r,
            preference_applied(api, facts.upsert, self.resolved.tx.overridable),
            out.response_headers.as_deref(),
            out.response_status.as_deref(),
        )
    }

    /// A POST call with a JSON body: its statement bound from a template when the shape
    /// and the body's keys were seen before (see `templates`), else planned (and learnt
    /// the second time the shape is seen).
    pub async fn call_templated(
        &self,
        shape: &PayloadShape,
        function: &str,
        body: Option<Bytes>,
    ) -> Result<Resp, ApiError> {
        let api = self.api;
        let bytes = body.unwrap_or_default();
        let call_body = plan::CallBody {
            content_type: api.content_type.as_deref(),
            bytes: &bytes,
        };
        let args = time(Stage::Plan, || plan::call::json_args(api, &call_body))?;
        let learnable = self.resolved.negotiated.explain.is_none();
        let (Some(args), true) = (args, learnable) else {
            return self.plan(self.planned(api, Some(bytes))?).await;
        };
        let Some(key) = shape.key_with(&args.keys) else {
            return self.call(self.call_planned(function, args)?).await;
        };
        match self.snap.calls.get(&key) {
            Known::Template(t) => {
                let statement = time(Stage::Plan, || t.statement(args.text));
                self.call_statement(statement, &t.facts).await
            }
            Known::Unknown => {
                self.snap.calls.seen(&key);
                self.call(self.call_planned(function, args)?).await
            }
            Known::Seen => {
                let probe_args = plan::call::JsonArgs {
                    text: templates::PAYLOAD_SENTINEL.to_string(),
                    keys: args.keys.clone(),
                };
                let text = args.text.clone();
                let plan = self.call_planned(function, args)?;
                let hoisted_names = &self.snap.config.db_hoisted_tx_settings;
                let facts = CallFacts::of(&plan, hoisted_names);
                let statement = time(Stage::Plan, || sql::call_statement(&plan));
                let template = self.call_planned(function, probe_args).ok().and_then(|p| {
                    let real = Rendering {
                        statement: &statement,
                        facts: &facts,
                    };
                    let probe = Rendering {
                        statement: &sql::call_statement(&p),
                        facts: &CallFacts::of(&p, hoisted_names),
                    };
                    templates::learn_payload(real, probe, &text)
                });
                self.snap.calls.put(&key, template);
                self.call_statement(statement, &facts).await
            }
            Known::NotTemplatable => self.call(self.call_planned(function, args)?).await,
        }
    }

    /// The plan of a POST call with its JSON body read.
    fn call_planned(
        &self,
        function: &str,
        args: plan::call::JsonArgs,
    ) -> Result<CallPlan<'r>, ApiError> {
        let snap = self.snap;
        let config = plan::PlanConfig::of(&snap.config);
        time(Stage::Plan, || {
            plan::call::call_plan_json(
                self.api,
                &self.resolved.negotiated,
                &snap.schema,
                self.resolved.schema.as_str(),
                function,
                args,
                &config,
            )
        })
    }

    async fn call(&self, plan: CallPlan<'_>) -> Result<Resp, ApiError> {
        let statement = time(Stage::Plan, || sql::call_statement(&plan));
        if let Some(explain) = &self.resolved.negotiated.explain {
            return self.explain(explain, &statement, plan.read_only).await;
        }
        let facts = CallFacts::of(&plan, &self.snap.config.db_hoisted_tx_settings);
        self.call_statement(statement, &facts).await
    }

    /// Runs a call's statement and answers with its outcome.
    async fn call_statement(
        &self,
        statement: Statement,
        facts: &CallFacts,
    ) -> Result<Resp, ApiError> {
        // Function settings named in db-hoisted-tx-settings apply to the whole transaction.
        let env = self.envelope(facts.read_only, facts.hoisted.clone())?;
        let api = self.api;
        let commit = self.resolved.tx.commit;
        let singular = facts.media_type.is_singular() && facts.returns_set;
        let strict_max = api
            .prefs
            .max_affected
            .filter(|_| api.prefs.strict == Some(true));
        if strict_max.is_some() && !facts.returns_set {
            return Err(ApiError::MaxAffectedNeedsSet);
        }
        // A call that nothing can refuse afterwards commits in the same round trip (a
        // read-only one has nothing to roll back even under tx=rollback).
        let fast = (facts.read_only || commit) && !singular && strict_max.is_none();
        // A volatile function may write even when called by GET: only STABLE and
        // IMMUTABLE ones may go to a standby.
        let replica = match fast && facts.read_only && !facts.volatile {
            true => self.replica_read(&env)?,
            false => None,
        };
        let (out, lsn) = match (fast, replica) {
            (true, Some(wanted)) => {
                let run = |pool| Box::pin(db::run_committed(pool, &env, &statement)) as _;
                (
                    self.state.replicas.read(self.pool(), wanted, run).await?,
                    None,
                )
            }
            (true, None) => self.committed(&env, &statement, !facts.read_only).await?,
            (false, _) => {
                self.decided(&env, &statement, |o| {
                    refuse_count(o.page_total, singular, strict_max)?;
                    Ok(commit)
                })
                .await?
            }
        };
        self.called(facts, out).map(|r| with_lsn(r, lsn))
    }

    /// The response to a call's outcome: nothing for void, a handler's output as is, or
    /// rows with their Content-Range.
    fn called(&self, facts: &CallFacts, out: db::Outcome) -> Result<Resp, ApiError> {
        let headers = out.response_headers.as_deref();
        let status = out.response_status.as_deref();
        if facts.returns_void {
            let mut r = body_response(204, String::new(), true);
            apply_response_gucs(&mut r, headers, status)?;
            return Ok(r);
        }
        if let Some(media) = &facts.media {
            let r = handler_response(200, out.body, facts.head, media);
            return finish_response(r, None, headers, status);
        }
        let total = self.api.prefs.count.and(out.total.or(Some(out.page_total)));
        let (code, content_range) = page_status(facts.offset, out.page_total, total)?;
        let aggregate = facts.aggregate.as_ref();
        let mut r = rows_response(code, out.body, facts.head, facts.media_type, aggregate);
        set_owned(&mut r, hyper::header::CONTENT_RANGE, content_range);
        let applied = preference_applied(self.api, false, self.resolved.tx.overridable);
        finish_response(r, applied, headers, status)
    }

    /// `application/vnd.pgrst.plan`: the EXPLAIN of exactly the statement the request
    /// would run.
    async fn explain(
        &self,
        explain: &PlanRequest,
        statement: &Statement,
        read_only: bool,
    ) -> Result<Resp, ApiError> {
        let wrapped = Statement {
            sql: format!("{}{}", explain.explain_prefix(), statement.sql),
            params: statement.params.clone(),
            shape: statement.shape,
        };
        let env = self.envelope(read_only, Vec::new())?;
        let commit = self.resolved.tx.commit;
        let body = db::run_explain(self.pool(), &env, &wrapped, commit).await?;
        let mut r = body_response(200, body, self.api.method == Method::Head);
        let media = self.resolved.negotiated.media_name();
        set_header(
            &mut r,
            hyper::header::CONTENT_TYPE,
            &explain.content_type(media),
        );
        Ok(r)
    }

    /// `GET /`: the documentation page, db-root-spec's result or the OpenAPI document.
    async fn root(&self, plan: RootPlan<'_>) -> Result<Resp, ApiError> {
        let head = self.api.method == Method::Head;
        let (media, mut r) = match plan {
            RootPlan::DocsPage { media } => (media, body_response(200, DOCS_PAGE, head)),
            RootPlan::RootSpec { media, call } => (media, boxed!(self.call(*call)).await?),
            RootPlan::Document { media, privileges } => (
                media,
                body_response(200, self.document(media, privileges).await?, head),
            ),
        };
        set_header(
            &mut r,
            hyper::header::CONTENT_TYPE,
            &format!("{media}; charset=utf-8"),
        );
        Ok(r)
    }

    /// The OpenAPI document: Swagger 2.0, or 3.1 for its registered media type; with
    /// `privileges`, only what the request's role may use.
    async fn document(&self, media: &str, privileges: bool) -> Result<String, ApiError> {
        use crate::openapi;
        let schema = &self.resolved.schema;
        let visible = if privileges {
            let env = self.envelope(true, Vec::new())?;
            let stmt = sql::openapi_privileges(schema);
            let out = db::run_read(self.pool(), &env, &stmt, None).await?;
            openapi::Visible::from_privileges(&String::from_utf8_lossy(&out.body))
        } else {
            openapi::Visible::All
        };
        let doc = time(Stage::Plan, || {
            let swagger = openapi::swagger(&self.snap.schema, schema, &self.snap.config, &visible);
            if media == "application/vnd.oai.openapi+json" {
                openapi::to_openapi31(&swagger)
            } else {
                swagger
            }
        });
        serde_json::to_string(&doc).map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// A write's response with its commit LSN (read replicas only), for the client to send
/// back with the reads that must see the write.
fn with_lsn(mut r: Resp, lsn: Option<Lsn>) -> Resp {
    if let Some(lsn) = lsn {
        set(&mut r, replicas::LSN_HEADER, &lsn.to_string());
    }
    r
}

/// PostgREST answers a POST 200 only when merge-duplicates inserted nothing (every row
/// updated, or none given); ignore-duplicates that skipped every row is still 201.
fn write_status(api: &ApiRequest, facts: &WriteFacts, out: &db::Outcome) -> u16 {
    let inserted_any = out.inserted.is_none_or(|i| i > 0);
    let merged_only = !inserted_any && api.prefs.resolution == Some(Resolution::MergeDuplicates);
    match api.method {
        Method::Post if !merged_only => 201,
        Method::Put if facts.representation && inserted_any => 201,
        Method::Post => 200,
        _ if facts.representation => 200,
        _ => 204,
    }
}
