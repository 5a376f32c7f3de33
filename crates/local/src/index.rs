//! The local knowledge base: a tantivy BM25 index of chunks, each carrying its owner's user id.
//! Every search has the owner as a required clause.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use manuel_core::PortError;
use manuel_core::domain::{Manual, RetrievedChunk, UserId};
use manuel_core::ports::KnowledgeBase;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{
    Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term, doc,
};

use crate::answer::TermWeights;
use crate::chunk::chunk_pages;

const ANALYZER: &str = "manuel_en";
const WRITER_MEMORY_BYTES: usize = 30_000_000;
/// A manual's name matters less than its text, but helps "the printer manual says…" questions.
const TITLE_BOOST: f32 = 0.3;

#[derive(Clone, Copy)]
struct Fields {
    user: Field,
    owner_manual: Field,
    manual_id: Field,
    page: Field,
    text: Field,
    title: Field,
}

pub struct LocalIndex {
    inner: Arc<Inner>,
}

struct Inner {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    analyzer: TextAnalyzer,
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(
            StopWordFilter::new(Language::English)
                .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new())),
        )
        .filter(Stemmer::new(Language::English))
        .build()
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let analysed = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let fields = Fields {
        user: builder.add_text_field("user", STRING),
        owner_manual: builder.add_text_field("owner_manual", STRING),
        manual_id: builder.add_text_field("manual_id", STRING | tantivy::schema::STORED),
        page: builder.add_u64_field("page", NumericOptions::default().set_stored()),
        text: builder.add_text_field(
            "text",
            TextOptions::default()
                .set_indexing_options(analysed.clone())
                .set_stored(),
        ),
        title: builder.add_text_field(
            "title",
            TextOptions::default().set_indexing_options(analysed),
        ),
    };
    (builder.build(), fields)
}

fn owner_manual(user: &UserId, manual_id: &str) -> String {
    format!("{}/{}", user.as_str(), manual_id)
}

impl LocalIndex {
    pub fn open(dir: &Path) -> Result<Self, PortError> {
        std::fs::create_dir_all(dir).map_err(PortError::failed)?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(PortError::failed)?;
        let index = Index::open_or_create(directory, schema).map_err(PortError::failed)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(PortError::failed)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(PortError::failed)?;
        Ok(Self {
            inner: Arc::new(Inner {
                reader,
                writer: Mutex::new(writer),
                fields,
                analyzer: analyzer(),
            }),
        })
    }

    /// Question-word weights over `user`'s chunks only, for the extractive answerer.
    pub fn term_weights(&self, user: &UserId) -> UserTermWeights {
        let inner = &self.inner;
        let searcher = inner.reader.searcher();
        let user_term = Term::from_field_text(inner.fields.user, user.as_str());
        let total = searcher
            .search(
                &TermQuery::new(user_term.clone(), IndexRecordOption::Basic),
                &Count,
            )
            .unwrap_or(0);
        UserTermWeights {
            searcher,
            user_term,
            text: inner.fields.text,
            total: total as f32,
            analyzer: Mutex::new(inner.analyzer.clone()),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, PortError> + Send + 'static,
    ) -> Result<T, PortError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(PortError::failed)?
    }
}

impl Inner {
    fn analyse(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut terms: Vec<String> = Vec::new();
        while stream.advance() {
            let term = stream.token().text.clone();
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        terms
    }

    fn commit(&self, writer: &mut IndexWriter) -> Result<(), PortError> {
        writer.commit().map_err(PortError::failed)?;
        self.reader.reload().map_err(PortError::failed)
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, PortError> {
        self.writer
            .lock()
            .map_err(|_| PortError::failed("the index writer lock was poisoned"))
    }
}

#[async_trait]
impl KnowledgeBase for LocalIndex {
    async fn ingest(&self, manual: &Manual, pages: &[String]) -> Result<(), PortError> {
        let chunks = chunk_pages(pages);
        let user = manual.user_id.clone();
        let manual_id = manual.id.clone();
        let title = manual.name.clone();
        self.blocking(move |inner| {
            let fields = inner.fields;
            let mut writer = inner.lock_writer()?;
            writer.delete_term(Term::from_field_text(
                fields.owner_manual,
                &owner_manual(&user, &manual_id),
            ));
            for chunk in chunks {
                writer
                    .add_document(doc!(
                        fields.user => user.as_str(),
                        fields.owner_manual => owner_manual(&user, &manual_id),
                        fields.manual_id => manual_id.as_str(),
                        fields.page => u64::from(chunk.page),
                        fields.text => chunk.text,
                        fields.title => title.as_str(),
                    ))
                    .map_err(PortError::failed)?;
            }
            inner.commit(&mut writer)
        })
        .await
    }

    async fn retrieve(
        &self,
        user: &UserId,
        question: &str,
        manual_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        let user = user.clone();
        let question = question.to_owned();
        let manual_ids: Option<Vec<String>> = manual_ids.map(<[String]>::to_vec);
        self.blocking(move |inner| {
            let fields = inner.fields;
            let terms = inner.analyse(&question);
            if terms.is_empty() || limit == 0 || manual_ids.as_ref().is_some_and(Vec::is_empty) {
                return Ok(Vec::new());
            }
            let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for term in &terms {
                words.push((
                    Occur::Should,
                    Box::new(TermQuery::new(
                        Term::from_field_text(fields.text, term),
                        IndexRecordOption::WithFreqs,
                    )),
                ));
                words.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(
                            Term::from_field_text(fields.title, term),
                            IndexRecordOption::WithFreqs,
                        )),
                        TITLE_BOOST,
                    )),
                ));
            }
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
                (
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(fields.user, user.as_str()),
                        IndexRecordOption::Basic,
                    )),
                ),
                (Occur::Must, Box::new(BooleanQuery::new(words))),
            ];
            if let Some(ids) = &manual_ids {
                let within: Vec<(Occur, Box<dyn Query>)> = ids
                    .iter()
                    .map(|id| {
                        (
                            Occur::Should,
                            Box::new(TermQuery::new(
                                Term::from_field_text(fields.manual_id, id),
                                IndexRecordOption::Basic,
                            )) as Box<dyn Query>,
                        )
                    })
                    .collect();
                clauses.push((Occur::Must, Box::new(BooleanQuery::new(within))));
            }
            let query = BooleanQuery::new(clauses);
            let searcher = inner.reader.searcher();
            let top = searcher
                .search(&query, &TopDocs::with_limit(limit).order_by_score())
                .map_err(PortError::failed)?;
            let mut chunks = Vec::with_capacity(top.len());
            for (score, address) in top {
                let document: TantivyDocument = searcher.doc(address).map_err(PortError::failed)?;
                let text_of = |field: Field| {
                    document
                        .get_first(field)
                        .and_then(|value| value.as_str())
                        .map(str::to_owned)
                };
                let (Some(manual_id), Some(text)) =
                    (text_of(fields.manual_id), text_of(fields.text))
                else {
                    continue;
                };
                let page = document
                    .get_first(fields.page)
                    .and_then(|value| value.as_u64())
                    .and_then(|page| u32::try_from(page).ok())
                    .unwrap_or(1);
                chunks.push(RetrievedChunk {
                    manual_id,
                    page,
                    text,
                    score,
                });
            }
            Ok(chunks)
        })
        .await
    }

    async fn remove(&self, manual: &Manual) -> Result<(), PortError> {
        let key = owner_manual(&manual.user_id, &manual.id);
        self.blocking(move |inner| {
            let mut writer = inner.lock_writer()?;
            writer.delete_term(Term::from_field_text(inner.fields.owner_manual, &key));
            inner.commit(&mut writer)
        })
        .await
    }
}

/// BM25-style idf of question words, computed over one user's chunks.
pub struct UserTermWeights {
    searcher: Searcher,
    user_term: Term,
    text: Field,
    total: f32,
    analyzer: Mutex<TextAnalyzer>,
}

impl TermWeights for UserTermWeights {
    fn terms(&self, text: &str) -> Vec<String> {
        let Ok(mut analyzer) = self.analyzer.lock() else {
            return Vec::new();
        };
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while stream.advance() {
            terms.push(stream.token().text.clone());
        }
        terms
    }

    fn idf(&self, term: &str) -> f32 {
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    self.user_term.clone(),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.text, term),
                    IndexRecordOption::Basic,
                )),
            ),
        ]);
        let frequency = self.searcher.search(&query, &Count).unwrap_or(0) as f32;
        (1.0 + (self.total - frequency + 0.5) / (frequency + 0.5)).ln()
    }
}
