// The API Management service: the only public entry to the product. It is deployed before the
// Function App because the Function App's access restrictions need the gateway's outbound IPs
// (classic tiers). The API, product, policies and the function key come later, in apim-api.bicep.

@description('Azure region of the service.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the API Management service (globally unique, it becomes NAME.azure-api.net).')
param name string

@description('Pricing tier. The v2 tiers deploy in minutes and bill per unit; Consumption bills per call but lacks per-key rate limits.')
@allowed([
  'Consumption'
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
])
param skuName string

@description('Email that receives API Management system notifications.')
param publisherEmail string

@description('Organization name shown in the developer portal and notification emails.')
param publisherName string

@description('Resource id of the user-assigned identity that reads the function key from Key Vault.')
param identityId string

@description('Log Analytics workspace that receives the gateway logs.')
param logAnalyticsId string

// Only the classic dedicated tiers have stable outbound IPs that the Function App can allow-list;
// Consumption and the v2 tiers send from shared, changing addresses.
var hasStaticOutboundIps = contains(['Developer', 'Basic', 'Standard', 'Premium'], skuName)

resource apim 'Microsoft.ApiManagement/service@2024-05-01' = {
  // checkov:skip=CKV_AZURE_107: the gateway is the product's public entry; VNet injection is not offered on the default tiers (Consumption, Basic v2) and is not needed to reach a public Function App.
  // checkov:skip=CKV_AZURE_174: same reason: callers reach the API over the internet, authenticated by subscription keys.
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    // Consumption has no units; every other tier starts with one.
    capacity: skuName == 'Consumption' ? 0 : 1
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    // The gateway is the public front door by design; callers need a subscription key.
    publicNetworkAccess: 'Enabled'
    // TLS 1.2+ towards clients and backends (the Consumption tier manages protocols itself).
    customProperties: skuName == 'Consumption' ? {} : {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'false'
    }
  }
}

resource gatewayLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'gateway-to-log-analytics'
  scope: apim
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = apim.name
output gatewayUrl string = apim.properties.gatewayUrl
output outboundIpAddresses array = hasStaticOutboundIps ? apim.properties.publicIPAddresses : []
