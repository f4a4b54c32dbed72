#!/usr/bin/env bash
# FlashFit's Kafka ACLs, rendered by `flashfit acls --format kafka-acls` (do not edit:
# re-render). Run with BOOTSTRAP=host:port and ADMIN_CONFIG=admin.properties.
set -euo pipefail

# app-gateway
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:app-gateway --operation Write --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:app-gateway --operation Write --operation Describe --topic flashfit.kpi --resource-pattern-type literal

# flashfit-attributes
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-attributes --operation Read --operation Describe --topic flashfit.classified --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-attributes --operation Write --operation Describe --topic flashfit.dlq.attributes --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-attributes --operation Write --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-attributes --operation Write --operation Describe --topic flashfit.status --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-attributes --operation Write --operation Describe --topic flashfit.tagged --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-attributes --operation Read --group flashfit-attributes --resource-pattern-type literal

# flashfit-classify
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-classify --operation Write --operation Describe --topic flashfit.classified --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-classify --operation Read --operation Describe --topic flashfit.detected --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-classify --operation Write --operation Describe --topic flashfit.dlq.classify --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-classify --operation Write --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-classify --operation Write --operation Describe --topic flashfit.status --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-classify --operation Read --group flashfit-classify --resource-pattern-type literal

# flashfit-detect
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-detect --operation Write --operation Describe --topic flashfit.detected --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-detect --operation Write --operation Describe --topic flashfit.dlq.detect --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-detect --operation Write --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-detect --operation Read --operation Describe --topic flashfit.quality --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-detect --operation Write --operation Describe --topic flashfit.status --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-detect --operation Read --group flashfit-detect --resource-pattern-type literal

# flashfit-embed
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-embed --operation Write --operation Describe --topic flashfit.dlq.embed --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-embed --operation Write --operation Describe --topic flashfit.embedded --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-embed --operation Write --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-embed --operation Write --operation Describe --topic flashfit.status --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-embed --operation Read --operation Describe --topic flashfit.tagged --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-embed --operation Read --group flashfit-embed --resource-pattern-type literal

# flashfit-feedback
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-feedback --operation Write --operation Describe --topic flashfit.dlq.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-feedback --operation Read --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-feedback --operation Write --operation Describe --topic flashfit.kpi --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-feedback --operation Read --group flashfit-feedback --resource-pattern-type literal

# flashfit-kpi
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-kpi --operation Write --operation Describe --topic flashfit.dlq.kpi --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-kpi --operation Read --operation Describe --topic flashfit.kpi --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-kpi --operation Read --group flashfit-kpi --resource-pattern-type literal

# flashfit-lance
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-lance --operation Read --operation Describe --topic flashfit.deletes --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-lance --operation Write --operation Describe --topic flashfit.dlq.lance --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-lance --operation Read --operation Describe --topic flashfit.embedded --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-lance --operation Read --group flashfit-lance --resource-pattern-type literal

# flashfit-operator
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-operator --operation Read --operation Write --operation Describe --topic flashfit. --resource-pattern-type prefixed
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-operator --operation Read --operation Describe --group flashfit --resource-pattern-type prefixed

# flashfit-parquet
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.deletes --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.attributes --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.classify --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Write --operation Describe --topic flashfit.dlq.dead_letters --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.detect --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.embed --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Write --operation Describe --topic flashfit.dlq.feedback_events --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.kpi --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.lance --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Write --operation Describe --topic flashfit.dlq.parquet --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.dlq.quality --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Write --operation Describe --topic flashfit.dlq.statuses --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.embedded --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --operation Describe --topic flashfit.status --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --group flashfit-dead_letters --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --group flashfit-feedback_events --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --group flashfit-parquet --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-parquet --operation Read --group flashfit-statuses --resource-pattern-type literal

# flashfit-quality
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-quality --operation Write --operation Describe --topic flashfit.dlq.quality --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-quality --operation Write --operation Describe --topic flashfit.feedback --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-quality --operation Write --operation Describe --topic flashfit.quality --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-quality --operation Write --operation Describe --topic flashfit.status --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-quality --operation Read --operation Describe --topic flashfit.uploads --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-quality --operation Read --group flashfit-quality --resource-pattern-type literal

# flashfit-serve
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:flashfit-serve --operation Write --operation Describe --topic flashfit.kpi --resource-pattern-type literal

# upload-service
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:upload-service --operation Write --operation Describe --topic flashfit.deletes --resource-pattern-type literal
kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --allow-principal User:upload-service --operation Write --operation Describe --topic flashfit.uploads --resource-pattern-type literal
