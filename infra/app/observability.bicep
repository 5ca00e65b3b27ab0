// What to look at and what wakes someone: an Azure Monitor workbook over Application Insights and
// the alert rules of the service (5xx rate, p95 latency, LLM throttling, poison messages).
// The queries read the request telemetry of the Functions host and the service's own spans and
// metrics (shared/observability/: dependency spans, `memory_layer.*` instruments).

@description('Azure region of the workbook and the alert rules.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Resource id of the Application Insights component the workbook and the alerts read.')
param applicationInsightsId string

@description('Resource id of an existing action group the alerts notify; empty creates the alerts without notifications (they still show in the portal).')
param actionGroupId string = ''

@description('Alert when more than this percentage of requests in 5 minutes answered 5xx.')
@minValue(1)
@maxValue(100)
param serverErrorRatePercent int = 5

@description('Alert when the 95th percentile of request latency over 15 minutes exceeds this many milliseconds.')
@minValue(100)
param latencyP95ThresholdMs int = 3000

@description('Alert when the LLM answered more than this many 429s in 15 minutes.')
@minValue(0)
param llmThrottleThreshold int = 10

@description('Alert when any poison queue holds more than this many messages.')
@minValue(0)
param poisonMessageThreshold int = 0

var actions = empty(actionGroupId) ? {} : {
  actionGroups: [
    actionGroupId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per component.
  name: guid(applicationInsightsId, 'memory-layer-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Memory Layer service'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('monitoring/workbook.json')
  }
}

// One scheduled log query per alert, over the Application Insights tables.
var rules = [
  {
    name: 'server-errors'
    displayName: 'Memory Layer: 5xx rate above ${serverErrorRatePercent}%'
    description: 'More than ${serverErrorRatePercent}% of the requests of the last 5 minutes answered 5xx (backend outage or bug; the request id in the response leads to the trace).'
    severity: 1
    window: 'PT5M'
    query: 'requests | summarize total = count(), failed = countif(toint(resultCode) >= 500) | where total > 0 | extend rate = 100.0 * failed / total'
    column: 'rate'
    threshold: serverErrorRatePercent
  }
  {
    name: 'latency-p95'
    displayName: 'Memory Layer: p95 latency above ${latencyP95ThresholdMs} ms'
    description: 'The 95th percentile of request latency over 15 minutes is above ${latencyP95ThresholdMs} ms; the workbook shows which endpoint and which dependency.'
    severity: 2
    window: 'PT15M'
    query: 'requests | summarize p95 = percentile(duration, 95)'
    column: 'p95'
    threshold: latencyP95ThresholdMs
  }
  {
    name: 'llm-throttling'
    displayName: 'Memory Layer: LLM throttling'
    description: 'Azure OpenAI answered more than ${llmThrottleThreshold} requests with 429 in 15 minutes (memory_layer.llm.throttles): raise the deployment capacity.'
    severity: 2
    window: 'PT15M'
    query: 'customMetrics | where name == "memory_layer.llm.throttles" | summarize throttles = sum(valueSum)'
    column: 'throttles'
    threshold: llmThrottleThreshold
  }
  {
    name: 'poison-messages'
    displayName: 'Memory Layer: poison messages'
    description: 'A poison queue holds more than ${poisonMessageThreshold} messages (memory_layer.queue.poison): work that failed every retry is waiting to be inspected.'
    severity: 1
    window: 'PT15M'
    query: 'customMetrics | where name == "memory_layer.queue.poison" | summarize poison = max(valueMax)'
    column: 'poison'
    threshold: poisonMessageThreshold
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'memory-layer-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: 'PT5M'
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Maximum'
            metricMeasureColumn: rule.column
            operator: 'GreaterThan'
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: actions
    }
  }
]

output workbookId string = workbook.id
output alertRuleNames array = [for (rule, i) in rules: alerts[i].name]
