// The Function App's storage account: host storage (AzureWebJobsStorage), the deployment package
// container of Flex Consumption, the tables of chat sessions, memory history and ingestion events, and
// the ingestion queue with its poison queue.
// Shared keys are disabled, so every client, the host included, authenticates with Entra ID.

@description('Azure region of the storage account.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Replication of the account. Zone-redundant by default: the tables hold user data.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Table of chat session turns (SESSIONS_TABLE).')
param sessionsTableName string

@description('Table of per-memory change history (HISTORY_TABLE).')
param historyTableName string

@description('Table of ingestion events (EVENTS_TABLE).')
param eventsTableName string

@description('Table of tenants\' token use per budget window (USAGE_TABLE).')
param usageTableName string

@description('Queue of ingestion events, read by the queue-triggered function; its poison queue is `<name>-poison`.')
param ingestQueueName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its host storage over the public endpoint; shared keys are disabled, so only Entra ID with a data role gets in.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; no container or table allows anonymous access.
  // checkov:skip=CKV_AZURE_206: zone-redundant by default; geo-redundancy is a parameter (storageSkuName) because it doubles the cost of data that is rebuilt from the vector store.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Keyless: account keys and SAS signed with them are rejected.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex Consumption without VNet integration reaches storage over the public endpoint, so the
      // firewall cannot deny by default; Entra ID auth (no shared key) is the control here.
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Child resources are declared at top level (with parent) rather than nested, so that every static
// checker sees them.
resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableServices 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource sessionsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableServices
  name: sessionsTableName
}

resource historyTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableServices
  name: historyTableName
}

resource eventsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableServices
  name: eventsTableName
}

resource usageTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableServices
  name: usageTableName
}

resource queueServices 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The host creates both on first use too; declared here so they exist (and are visible) from the start.
resource ingestQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueServices
  name: ingestQueueName
}

// Where the host moves a message after host.json's maxDequeueCount failed deliveries.
resource ingestPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueServices
  name: '${ingestQueueName}-poison'
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output ingestQueueName string = ingestQueue.name
