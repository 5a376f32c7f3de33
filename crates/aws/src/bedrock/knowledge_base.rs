//! The knowledge base port over Bedrock Knowledge Bases: `Retrieve` with the search its vector
//! store allows ([`VectorStore`]) and a `user_id` filter that every call carries, and per-document ingestion on the S3 data source
//! (`IngestKnowledgeBaseDocuments` / `DeleteKnowledgeBaseDocuments`), never a whole-source sync.
//!
//! A document's ingestion ends in one of the final states `GetKnowledgeBaseDocuments` reports
//! (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent_KnowledgeBaseDocumentDetail.html):
//! `INDEXED` and `PARTIALLY_INDEXED` (ready), `METADATA_PARTIALLY_INDEXED`, `FAILED`,
//! `IGNORED` and `METADATA_UPDATE_FAILED` (failed, with Bedrock's reason).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_bedrockagent::types::{
    ContentDataSourceType, CustomS3Location, DocumentContent, DocumentIdentifier, DocumentMetadata,
    DocumentStatus, KnowledgeBaseDocument, MetadataSourceType, S3Content, S3Location,
};
use aws_sdk_bedrockagentruntime::types::{
    FilterAttribute, KnowledgeBaseQuery, KnowledgeBaseRetrievalConfiguration,
    KnowledgeBaseRetrievalResult, KnowledgeBaseVectorSearchConfiguration, RetrievalFilter,
    SearchType,
};
use aws_smithy_types::Document;
use manuel_core::PortError;
use manuel_core::domain::{Manual, RetrievedChunk, UserId};
use manuel_core::ports::KnowledgeBase;
use manuel_core::telemetry::{self, Metric};

use super::sdk_error;
use crate::s3::{S3ObjectStore, metadata_sidecar_key, sidecar_user_id};

/// The metadata key Bedrock sets on chunks of PDF documents.
pub const PAGE_NUMBER_KEY: &str = "x-amz-bedrock-kb-document-page-number";

/// Where the knowledge base keeps its vectors (template.yaml's `VectorStore`), which decides
/// the search `Retrieve` may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorStore {
    /// Amazon S3 Vectors: vector search only; Bedrock refuses a HYBRID search on it.
    S3Vectors,
    /// OpenSearch Serverless: HYBRID (vector and keyword) search.
    OpenSearchServerless,
}

impl VectorStore {
    /// The value of `VECTOR_STORE` (the template parameter's values).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "S3Vectors" => Some(Self::S3Vectors),
            "OpenSearchServerless" => Some(Self::OpenSearchServerless),
            _ => None,
        }
    }

    pub fn search_type(self) -> SearchType {
        match self {
            Self::S3Vectors => SearchType::Semantic,
            Self::OpenSearchServerless => SearchType::Hybrid,
        }
    }
}

#[derive(Clone, Debug)]
pub struct KnowledgeBaseSettings {
    pub knowledge_base_id: String,
    pub data_source_id: String,
    pub vector_store: VectorStore,
    /// How long `ingest` waits for the document to be indexed before giving up (the caller
    /// retries later; asking again does not start a second ingestion).
    pub ingestion_wait: Duration,
    /// Pause between two status reads while waiting.
    pub poll_interval: Duration,
}

pub struct BedrockKnowledgeBase {
    runtime: aws_sdk_bedrockagentruntime::Client,
    agent: aws_sdk_bedrockagent::Client,
    objects: Arc<S3ObjectStore>,
    settings: KnowledgeBaseSettings,
}

impl BedrockKnowledgeBase {
    pub fn new(
        runtime: aws_sdk_bedrockagentruntime::Client,
        agent: aws_sdk_bedrockagent::Client,
        objects: Arc<S3ObjectStore>,
        settings: KnowledgeBaseSettings,
    ) -> Self {
        Self {
            runtime,
            agent,
            objects,
            settings,
        }
    }

    fn s3_uri(&self, key: &str) -> String {
        format!("s3://{}/{}", self.objects.bucket(), key)
    }

    fn identifier(&self, key: &str) -> Result<DocumentIdentifier, PortError> {
        DocumentIdentifier::builder()
            .data_source_type(ContentDataSourceType::S3)
            .s3(S3Location::builder()
                .uri(self.s3_uri(key))
                .build()
                .map_err(PortError::failed)?)
            .build()
            .map_err(PortError::failed)
    }

    /// The document's status in the knowledge base, and the reason Bedrock gives for it.
    pub async fn document_status(
        &self,
        key: &str,
    ) -> Result<Option<(DocumentStatus, Option<String>)>, PortError> {
        let output = self
            .agent
            .get_knowledge_base_documents()
            .knowledge_base_id(&self.settings.knowledge_base_id)
            .data_source_id(&self.settings.data_source_id)
            .document_identifiers(self.identifier(key)?)
            .send()
            .await
            .map_err(|error| sdk_error("bedrock-ingestion", error))?;
        Ok(output.document_details().first().map(|detail| {
            (
                detail.status().clone(),
                detail.status_reason().map(str::to_owned),
            )
        }))
    }

    async fn start_ingestion(&self, manual: &Manual) -> Result<(), PortError> {
        let metadata = DocumentMetadata::builder()
            .r#type(MetadataSourceType::S3Location)
            .s3_location(
                CustomS3Location::builder()
                    .uri(self.s3_uri(&metadata_sidecar_key(&manual.key)))
                    .build()
                    .map_err(PortError::failed)?,
            )
            .build()
            .map_err(PortError::failed)?;
        let content = DocumentContent::builder()
            .data_source_type(ContentDataSourceType::S3)
            .s3(S3Content::builder()
                .s3_location(
                    S3Location::builder()
                        .uri(self.s3_uri(&manual.key))
                        .build()
                        .map_err(PortError::failed)?,
                )
                .build())
            .build()
            .map_err(PortError::failed)?;
        let document = KnowledgeBaseDocument::builder()
            .metadata(metadata)
            .content(content)
            .build();
        self.agent
            .ingest_knowledge_base_documents()
            .knowledge_base_id(&self.settings.knowledge_base_id)
            .data_source_id(&self.settings.data_source_id)
            .client_token(ingestion_token(manual))
            .documents(document)
            .send()
            .await
            .map_err(|error| sdk_error("bedrock-ingestion", error))?;
        Ok(())
    }

    fn retrieval_filter(
        user: &UserId,
        manual_ids: Option<&[String]>,
    ) -> Result<RetrievalFilter, PortError> {
        let owner = RetrievalFilter::Equals(
            FilterAttribute::builder()
                .key("user_id")
                .value(Document::String(user.as_str().to_owned()))
                .build()
                .map_err(PortError::failed)?,
        );
        let Some(ids) = manual_ids else {
            return Ok(owner);
        };
        let listed = RetrievalFilter::In(
            FilterAttribute::builder()
                .key("manual_id")
                .value(Document::Array(
                    ids.iter().map(|id| Document::String(id.clone())).collect(),
                ))
                .build()
                .map_err(PortError::failed)?,
        );
        Ok(RetrievalFilter::AndAll(vec![owner, listed]))
    }
}

fn record_ingestion_latency(started: Instant) {
    telemetry::record_dependency(
        Metric::DependencyLatency,
        "bedrock-ingestion",
        started.elapsed().as_secs_f64() * 1000.0,
    );
}

/// Ingestion of the same manual version is one request to Bedrock however often it is asked
/// for (the S3 event can be delivered twice; a retry after a timeout asks again).
fn ingestion_token(manual: &Manual) -> String {
    format!(
        "{}-{}",
        manual.id,
        manual.sha256.get(..16).unwrap_or(&manual.sha256)
    )
}

/// A retrieval result as a passage, if it belongs to `user`. The filter already guarantees
/// that; checking again means a misconfigured data source can never leak another user's text.
fn to_chunk(user: &UserId, result: &KnowledgeBaseRetrievalResult) -> Option<RetrievedChunk> {
    let metadata = result.metadata()?;
    let text_of = |key: &str| match metadata.get(key) {
        Some(Document::String(value)) => Some(value.clone()),
        _ => None,
    };
    if text_of("user_id").as_deref() != Some(user.as_str()) {
        tracing::warn!("a retrieval result without the caller's user_id was dropped");
        return None;
    }
    let manual_id = text_of("manual_id")?;
    let page = match metadata.get(PAGE_NUMBER_KEY) {
        Some(Document::Number(number)) => u32::try_from(number.to_f64_lossy() as i64).ok(),
        Some(Document::String(value)) => value.parse().ok(),
        _ => None,
    }
    .unwrap_or(1)
    .max(1);
    let text = result.content().map(|content| content.text().to_owned())?;
    Some(RetrievedChunk {
        manual_id,
        page,
        text,
        score: result.score().unwrap_or(0.0) as f32,
        similarity: None,
    })
}

#[async_trait]
impl KnowledgeBase for BedrockKnowledgeBase {
    /// Writes the metadata sidecar before the file, so the file's S3 event finds it.
    async fn prepare(&self, manual: &Manual) -> Result<(), PortError> {
        self.objects
            .put_metadata_sidecar(
                &manual.key,
                manual.user_id.as_str(),
                &manual.id,
                &manual.name,
            )
            .await
    }

    /// Writes the metadata sidecar again (uploads made before it existed, or a sidecar lost
    /// since), asks Bedrock to ingest this one document, and waits (at most `ingestion_wait`)
    /// until it is indexed. `pages` are not sent: Bedrock parses the object itself.
    async fn ingest(&self, manual: &Manual, _pages: &[String]) -> Result<(), PortError> {
        self.prepare(manual).await?;
        let started = Instant::now();
        let already = self.document_status(&manual.key).await?;
        let in_flight = matches!(
            already,
            Some((
                DocumentStatus::Starting | DocumentStatus::InProgress | DocumentStatus::Pending,
                _
            ))
        );
        if !in_flight {
            self.start_ingestion(manual).await?;
        }
        loop {
            match self.document_status(&manual.key).await? {
                Some((DocumentStatus::Indexed, _)) => {
                    record_ingestion_latency(started);
                    return Ok(());
                }
                // Some chunks made it into the index and others did not: what was indexed is
                // searchable, so the manual is usable, and refusing it would leave its owner
                // with nothing. It is counted and logged so an operator can look at why.
                Some((DocumentStatus::PartiallyIndexed, reason)) => {
                    record_ingestion_latency(started);
                    telemetry::record(Metric::ManualsPartiallyIndexed, 1.0);
                    tracing::warn!(
                        manual_id = %manual.id,
                        reason = reason.as_deref().unwrap_or(""),
                        "the knowledge base indexed the manual only in part; it is ready, some passages may not be found"
                    );
                    return Ok(());
                }
                // The metadata (`user_id`, `manual_id`) reached only some chunks. Retrieval
                // filters on `user_id`, so the chunks without it can never be found by their
                // owner: the manual would look ready and silently miss answers. It fails with a
                // reason instead (asking again re-ingests the same content and metadata).
                Some((DocumentStatus::MetadataPartiallyIndexed, reason)) => {
                    return Err(PortError::failed(format!(
                        "the knowledge base indexed the document's metadata only in part ({}): {}",
                        DocumentStatus::MetadataPartiallyIndexed.as_str(),
                        reason.unwrap_or_default()
                    )));
                }
                Some((
                    status @ (DocumentStatus::Failed
                    | DocumentStatus::Ignored
                    | DocumentStatus::MetadataUpdateFailed),
                    reason,
                )) => {
                    return Err(PortError::failed(format!(
                        "the knowledge base did not index the document ({}): {}",
                        status.as_str(),
                        reason.unwrap_or_default()
                    )));
                }
                _ => {}
            }
            if started.elapsed() + self.settings.poll_interval >= self.settings.ingestion_wait {
                return Err(PortError::Unavailable {
                    service: "bedrock-ingestion",
                    message: format!(
                        "the document was not indexed within {:?}; it is still being ingested",
                        self.settings.ingestion_wait
                    ),
                });
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    async fn retrieve(
        &self,
        user: &UserId,
        question: &str,
        manual_ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<RetrievedChunk>, PortError> {
        let search = KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(i32::try_from(limit.clamp(1, 100)).unwrap_or(8))
            .override_search_type(self.settings.vector_store.search_type())
            .filter(Self::retrieval_filter(user, manual_ids)?)
            .build();
        let started = Instant::now();
        let output = self
            .runtime
            .retrieve()
            .knowledge_base_id(&self.settings.knowledge_base_id)
            .retrieval_query(KnowledgeBaseQuery::builder().text(question).build())
            .retrieval_configuration(
                KnowledgeBaseRetrievalConfiguration::builder()
                    .vector_search_configuration(search)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| sdk_error("bedrock-retrieve", error))?;
        telemetry::record_dependency(
            Metric::DependencyLatency,
            "bedrock-retrieve",
            started.elapsed().as_secs_f64() * 1000.0,
        );
        Ok(output
            .retrieval_results()
            .iter()
            .filter_map(|result| to_chunk(user, result))
            .collect())
    }

    async fn remove(&self, manual: &Manual) -> Result<(), PortError> {
        let output = self
            .agent
            .delete_knowledge_base_documents()
            .knowledge_base_id(&self.settings.knowledge_base_id)
            .data_source_id(&self.settings.data_source_id)
            .document_identifiers(self.identifier(&manual.key)?)
            .send()
            .await;
        match output {
            Ok(_) => Ok(()),
            // Never ingested (it failed before, or was deleted twice): nothing to remove.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(sdk_error("bedrock-ingestion", error)),
        }
    }

    /// The owner in the file's metadata sidecar, which [`KnowledgeBase::prepare`] writes before
    /// the file can arrive (S3 reads are strongly consistent after a write:
    /// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel>).
    /// A missing sidecar is an error here, not `None`: without `s3:ListBucket` S3 answers 403.
    async fn owner_of(&self, key: &str) -> Result<Option<UserId>, PortError> {
        use manuel_core::ports::ObjectStore;
        Ok(self
            .objects
            .get(&metadata_sidecar_key(key))
            .await?
            .and_then(|sidecar| sidecar_user_id(&sidecar)))
    }
}
