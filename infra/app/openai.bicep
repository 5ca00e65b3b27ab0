// Azure OpenAI account with one chat and one embedding deployment. Local (API key) auth is off:
// the Function App calls it with its managed identity (Cognitive Services OpenAI User, rbac.bicep).

@description('Azure region of the account; it must offer both models with the chosen deployment SKU.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the account; also its custom subdomain (https://NAME.openai.azure.com).')
param name string

@description('Deployment (and model) that answers chat and extracts memories, e.g. gpt-4o-mini.')
param chatModelName string

@description('Version of the chat model.')
param chatModelVersion string

@description('Capacity of the chat deployment, in thousands of tokens per minute.')
@minValue(1)
param chatCapacity int

@description('Model used for embeddings, e.g. text-embedding-3-small.')
param embeddingModelName string

@description('Version of the embedding model.')
param embeddingModelVersion string

@description('Capacity of the embedding deployment, in thousands of tokens per minute.')
@minValue(1)
param embeddingCapacity int

@description('Deployment SKU of both models: GlobalStandard (pay per token, widest availability) or Standard (regional).')
@allowed([
  'GlobalStandard'
  'Standard'
  'DataZoneStandard'
])
param deploymentSkuName string

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_238: the account calls no other resource (no customer-managed key, no data source), so an identity would be unused.
  // checkov:skip=CKV_AZURE_134: the Function App (Flex Consumption without VNet integration) calls the public endpoint; local auth is off, so only Entra ID tokens with the role are accepted.
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    // Entra ID only: keys cannot be used, so there is no key to leak or rotate.
    disableLocalAuth: true
    // The Function App (Flex Consumption without VNet) calls the public endpoint.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource chatDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: chatModelName
  sku: {
    name: deploymentSkuName
    capacity: chatCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: chatModelName
      version: chatModelVersion
    }
    versionUpgradeOption: 'OnceNewDefaultVersionAvailable'
  }
}

resource embeddingDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: embeddingModelName
  sku: {
    name: deploymentSkuName
    capacity: embeddingCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: embeddingModelName
      version: embeddingModelVersion
    }
  }
  // Deployments of one account cannot be changed in parallel.
  dependsOn: [
    chatDeployment
  ]
}

output name string = account.name
output id string = account.id
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chatDeployment.name
output embeddingDeploymentName string = embeddingDeployment.name
output embeddingModelName string = embeddingModelName
